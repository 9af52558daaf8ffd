"""The configuration reference, generated from the config tree's own field descriptions.

`render()` walks `MediaRayConfig` and writes one table per section (key, type, default,
description) in Markdown; `docs/configuration.md` is its output, and CI checks that the file
is current (`media-ray config-reference --check docs/configuration.md`).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from media_ray.config import MediaRayConfig

HEADER = """# Configuration reference

Generated from the descriptions in `media_ray/config.py` and the detectors' parameters by
`media-ray config-reference > docs/configuration.md`; do not edit by hand. Values come from the
environment (`MEDIA_RAY_` prefix, `__` between levels, e.g. `MEDIA_RAY_SAMPLING__FPS=2`), then
a YAML file (`--config`), then these defaults; command-line flags apply on top.
"""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (directly, optional, or as dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    if origin is dict:
        return _model_of(typing.get_args(annotation)[1])
    return None


def _type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value, default=str)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section(path: str, model: type[BaseModel], out: list[str], keyed: bool = False) -> None:
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    out.append(f"\n## `{path}`" + (" (by name)" if keyed else "") + "\n")
    if doc:
        out.append(_cell(doc) + "\n")
    out.append("| key | type | default | description |")
    out.append("|---|---|---|---|")
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        out.append(
            f"| `{name}` | {_cell(_type_name(info.annotation))} | {_cell(_default(info))} | "
            f"{_cell(info.description or '')} |"
        )
        if sub is not None:
            is_map = typing.get_origin(info.annotation) is dict
            nested.append((f"{path}.{name}" + (".NAME" if is_map else ""), sub, is_map))
    for sub_path, sub, is_map in nested:
        _section(sub_path, sub, out, is_map)


def undocumented(model: type[BaseModel] = MediaRayConfig, path: str = "") -> list[str]:
    """Fields of the tree without a description."""
    missing = []
    for name, info in model.model_fields.items():
        where = f"{path}.{name}" if path else name
        if not info.description:
            missing.append(where)
        sub = _model_of(info.annotation)
        if sub is not None:
            missing.extend(undocumented(sub, where))
    return missing


def render() -> str:
    """The whole reference, as Markdown."""
    out = [HEADER]
    for name, info in MediaRayConfig.model_fields.items():
        sub = _model_of(info.annotation)
        if sub is None:
            out.append(
                f"\n## `{name}`\n\n{_cell(info.description or '')} Type "
                f"{_cell(_type_name(info.annotation))}, default {_default(info)}.\n"
            )
        else:
            _section(name, sub, out, typing.get_origin(info.annotation) is dict)
    return "\n".join(out).rstrip() + "\n"
