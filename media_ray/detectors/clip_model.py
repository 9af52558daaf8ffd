"""The `clip` detector's model: where its weights are, and loading them once per process.

A model is a Hugging Face hub id or a local folder holding a CLIPModel. `model_reason` says,
without loading anything, why a model cannot be used here (a folder that is not a model, an id
neither in the local cache nor reachable on the hub); `load_clip` loads it, once per (model,
device, dtype), shared by every detector instance that names it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from media_ray.detectors import DetectorError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
#: OpenAI CLIP's image normalisation, used when the model folder has no preprocessor_config.json
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NETWORK_CHECK_S = 2.0
HINT = "point --clip-model (detectors.clip.model) at a local folder holding a CLIP model"


# ---------------------------------------------------------------------------------------------
# where the weights are


def _is_local(model: str) -> bool:
    """Whether `model` names a folder rather than a hub id."""
    return (
        os.path.isabs(model)
        or model.startswith((".", "~"))
        or os.path.exists(model)
        or model.count("/") > 1
        or "\\" in model
    )


def _cached_file(repo_id: str, filename: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # invalid id, no huggingface_hub
        return None
    return found if isinstance(found, str) else None


def _in_cache(repo_id: str) -> bool:
    """config.json and a weights file of the id are in the local Hugging Face cache."""
    if _cached_file(repo_id, "config.json") is None:
        return False
    return any(
        _cached_file(repo_id, f) is not None
        for f in (
            "model.safetensors",
            "pytorch_model.bin",
            "model.safetensors.index.json",
            "pytorch_model.bin.index.json",
        )
    )


def _offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return False


def _hub_reachable(timeout: float = NETWORK_CHECK_S) -> bool:
    """A TCP connection to the hub endpoint opens within `timeout` (name lookup included)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True, name="clip-hub-check")
    t.start()
    t.join(timeout + 0.5)  # getaddrinfo ignores the socket timeout; don't wait on it
    return bool(result and result[0])


def model_reason(model: str) -> str | None:
    if _is_local(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            return f"clip: model folder {folder} does not exist; {HINT}"
        if not (folder / "config.json").is_file():
            return f"clip: model folder {folder} has no config.json; {HINT}"
        return None
    if _in_cache(model):
        return None
    if _offline():
        return f"clip: model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {HINT}"
    if _hub_reachable():
        return None
    return f"clip: model {model!r} is not in the local Hugging Face cache and the hub is unreachable; {HINT}"


# ---------------------------------------------------------------------------------------------
# the model, loaded once per process


@dataclass
class _Clip:
    model: Any
    tokenizer: Any
    device: Any
    dtype: Any
    size: tuple[int, int]  # input height, width
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    logit_scale: float
    max_length: int


_MODELS: dict[tuple[str, str, str], _Clip] = {}
_LOCK = threading.Lock()


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise DetectorError(f"clip: device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectorError(f"clip: device {name!r} asked for but CUDA is not available")
    return device


def _norm_constants(model: str, local: bool) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    path = (
        Path(model).expanduser() / "preprocessor_config.json"
        if local
        else _cached_file(model, "preprocessor_config.json")
    )
    if path is not None and Path(path).is_file():
        try:
            cfg = json.loads(Path(path).read_text())
            mean, std = tuple(float(v) for v in cfg["image_mean"]), tuple(float(v) for v in cfg["image_std"])
            if len(mean) == 3 and len(std) == 3:
                return mean, std
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("clip: %s unreadable (%s); using the OpenAI CLIP mean/std", path, e)
    return CLIP_MEAN, CLIP_STD


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(e).__name__)


def load_clip(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "float32") -> _Clip:
    """The CLIP model, tokenizer and preprocessing constants; loaded once per (model, device, dtype)."""
    import torch

    dev = _resolve_device(device)
    if dtype == "float16" and dev.type != "cuda":
        log.warning("clip: float16 is for cuda; running float32 on %s", dev)
        dtype = "float32"
    local = _is_local(model)
    ident = str(Path(model).expanduser().resolve()) if local else model
    key = (ident, str(dev), dtype)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        reason = model_reason(model)
        if reason is not None:
            raise DetectorError(reason)
        from transformers import CLIPModel, CLIPTokenizer

        torch_dtype = getattr(torch, dtype)
        kwargs: dict[str, Any] = {}
        if not local and _in_cache(model):
            kwargs["local_files_only"] = True  # no network round trip for a cached model
        try:
            try:
                net = CLIPModel.from_pretrained(ident, dtype=torch_dtype, **kwargs)
            except TypeError:  # transformers 4.x
                net = CLIPModel.from_pretrained(ident, torch_dtype=torch_dtype, **kwargs)
            tokenizer = CLIPTokenizer.from_pretrained(ident, **kwargs)
        except Exception as e:
            raise DetectorError(f"clip: cannot load {model!r}: {_one_line(e)}; {HINT}") from e
        net = net.to(dev).eval()
        vc = net.config.vision_config
        size = vc.image_size if isinstance(vc.image_size, (list, tuple)) else (vc.image_size, vc.image_size)
        mean, std = _norm_constants(model, local)
        logit_scale = float(min(net.logit_scale.detach().float().exp().item(), 100.0))
        max_length = int(getattr(net.config.text_config, "max_position_embeddings", 77))
        loaded = _Clip(
            net, tokenizer, dev, torch_dtype, (int(size[0]), int(size[1])), mean, std, logit_scale, max_length
        )
        _MODELS[key] = loaded
        n = sum(p.numel() for p in net.parameters())
        log.info(
            "clip: loaded %s on %s (%s, %.1fM parameters, input %dx%d)",
            model,
            dev,
            dtype,
            n / 1e6,
            size[1],
            size[0],
        )
        return loaded


def pooled(out: Any):
    """The embedding from get_*_features: a tensor (transformers 4) or an output object (5)."""
    if hasattr(out, "pooler_output"):
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[1] if len(out) > 1 else out[0]
    return out
