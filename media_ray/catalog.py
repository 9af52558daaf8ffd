"""The brand catalogue: which brands to look for, with their reference images and prompts.

A catalogue is a folder of `BRAND.png|jpg|jpeg|webp` reference images (RGBA keeps the mark's
own shape; RGB is taken as is), or of `BRAND/` folders holding any number of such images (the
brand's references, in file-name order), optionally with a `brands.json` that gives each id a
display name, aliases, text prompts and main colour, either as a list of objects with an `id`
or as a mapping from id to object. Or it is a list of plain names, for zero-shot detectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class CatalogError(ValueError):
    """The catalogue cannot be used (empty, unreadable, malformed)."""


@dataclass(frozen=True)
class Brand:
    id: str
    name: str
    aliases: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    colour: tuple[int, int, int] | None = None  # main colour, RGB
    #: the first reference image, RGBA uint8 (`images[0]`)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: every reference image, RGBA uint8; given `image` alone, it is `(image,)`
    images: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        images = tuple(self.images)
        if self.image is None and images:
            object.__setattr__(self, "image", images[0])
        elif self.image is not None and not images:
            images = (self.image,)
        elif images and self.image is not images[0]:
            raise CatalogError(f"brand {self.id!r}: image must be the first of its images")
        object.__setattr__(self, "images", images)

    @property
    def names(self) -> tuple[str, ...]:
        """The display name followed by the aliases, without repeats."""
        return tuple(dict.fromkeys((self.name, *self.aliases)))


def _hex_to_rgb(value: str | None) -> tuple[int, int, int] | None:
    if not value:
        return None
    v = value.lstrip("#")
    if len(v) != 6 or any(c not in "0123456789abcdefABCDEF" for c in v):
        raise CatalogError(f"colour {value!r} is not a 6-digit hex value")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


def _read_rgba(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CatalogError(f"cannot read brand image {path}")
    return _as_rgba(img)


def decode_brand_image(data: bytes) -> np.ndarray:
    """A brand's reference image from the bytes of a PNG/JPEG/WebP file, as RGBA uint8, read
    exactly as a catalogue folder's images are (grey, RGB, RGBA; 8 or 16 bits)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CatalogError("the image cannot be read (PNG, JPEG or WebP expected)")
    return _as_rgba(img)


def _as_rgba(img: np.ndarray) -> np.ndarray:
    """An image as OpenCV decodes it (BGR order, any channel count, 8 or 16 bits) as RGBA uint8."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    if img.dtype != np.uint8:  # 16-bit PNGs
        img = (img / 257).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def parse_colour(value: str | None) -> tuple[int, int, int] | None:
    """A brand's main colour from `RRGGBB` or `#RRGGBB` (None when empty)."""
    return _hex_to_rgb(value)


def _read_meta(folder: Path) -> dict[str, dict]:
    path = folder / "brands.json"
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CatalogError(f"cannot read {path}: {e}") from e
    if isinstance(raw, list):
        try:
            return {str(item["id"]): item for item in raw}
        except (KeyError, TypeError) as e:
            raise CatalogError(f"{path}: every entry of the list needs an 'id'") from e
    if isinstance(raw, dict):
        return {str(k): dict(v, id=k) for k, v in raw.items()}
    raise CatalogError(f"{path}: expected a list or an object")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def reference_paths(folder: str | Path) -> dict[str, list[Path]]:
    """Each brand of a catalogue folder with its reference image files, by brand id in name
    order: a `BRAND.png` file is one reference, a `BRAND/` folder holds any number (file-name
    order). Hidden entries, and folders without images (logged), are not brands; a brand that
    is both a file and a folder is a CatalogError."""
    folder = Path(folder)
    out: dict[str, list[Path]] = {}
    kinds: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            brand_id, paths = entry.name, sorted((p for p in entry.iterdir() if _is_image(p)), key=lambda p: p.name)
            if not paths:
                log.warning("%s holds no images (%s): not a brand", entry, ", ".join(IMAGE_SUFFIXES))
                continue
        elif _is_image(entry):
            brand_id, paths = entry.stem, [entry]
        else:
            continue
        kind = "folder" if entry.is_dir() else "file"
        if brand_id in out:
            if kind != kinds[brand_id] or kind == "folder":
                raise CatalogError(f"brand {brand_id!r} in {folder} is both a file and a folder: keep one")
            raise CatalogError(f"brand {brand_id!r} in {folder} has more than one image file: keep one")
        out[brand_id], kinds[brand_id] = paths, kind
    return out


class BrandCatalog:
    """An ordered, immutable set of brands; `version` changes whenever its content does. It may
    be empty (a server started without brands, which are then added through the API); what
    needs brands to work on, such as a file analysis, checks for them itself."""

    def __init__(self, brands: list[Brand]):
        ids = [b.id for b in brands]
        if len(set(ids)) != len(ids):
            raise CatalogError("brand ids repeat in the catalogue")
        self.brands: tuple[Brand, ...] = tuple(brands)
        h = hashlib.sha1()
        for b in self.brands:
            h.update(repr((b.id, b.name, b.aliases, b.prompts, b.colour)).encode())
            for image in b.images:
                h.update(image.tobytes())
        self.version = h.hexdigest()[:12]

    def __iter__(self):
        return iter(self.brands)

    def __len__(self) -> int:
        return len(self.brands)

    def __getitem__(self, brand_id: str) -> Brand:
        for b in self.brands:
            if b.id == brand_id:
                return b
        raise KeyError(brand_id)

    @property
    def ids(self) -> list[str]:
        return [b.id for b in self.brands]

    def with_images(self) -> list[Brand]:
        return [b for b in self.brands if b.image is not None]

    def names_only(self) -> BrandCatalog:
        """The brands without their reference images, under this catalogue's version: what a
        stage chain needs (names for its report), light to send to an ingest actor for every
        file or stream rather than every reference image again."""
        light = BrandCatalog([replace(b, image=None, images=()) for b in self.brands])
        light.version = self.version
        return light

    @classmethod
    def from_folder(cls, folder: str | Path) -> BrandCatalog:
        folder = Path(folder)
        if not folder.is_dir():
            raise CatalogError(f"brand folder {folder} does not exist or is not a folder")
        meta = _read_meta(folder)
        brands = []
        for brand_id, images in reference_paths(folder).items():
            info = meta.get(brand_id, {})
            brands.append(
                Brand(
                    id=brand_id,
                    name=str(info.get("name") or brand_id),
                    aliases=tuple(info.get("aliases", ())),
                    prompts=tuple(info.get("prompts", ())),
                    colour=_hex_to_rgb(info.get("hex") or info.get("colour")),
                    images=tuple(_read_rgba(p) for p in images),
                )
            )
        # brands.json may also name brands without an image: text-only, for zero-shot detectors
        for brand_id, info in meta.items():
            if not any(b.id == brand_id for b in brands):
                brands.append(
                    Brand(
                        id=brand_id,
                        name=str(info.get("name") or brand_id),
                        aliases=tuple(info.get("aliases", ())),
                        prompts=tuple(info.get("prompts", ())),
                        colour=_hex_to_rgb(info.get("hex") or info.get("colour")),
                    )
                )
        if not brands:
            raise CatalogError(
                f"brand folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no brands.json"
            )
        log.info(
            "catalogue %s: %d brands, %d with images (%d images)",
            folder,
            len(brands),
            sum(b.image is not None for b in brands),
            sum(len(b.images) for b in brands),
        )
        return cls(brands)

    @classmethod
    def from_names(cls, names: list[str]) -> BrandCatalog:
        """A text-only catalogue for zero-shot use: ids are the names, lower-cased, slugged."""
        brands = []
        for name in names:
            name = name.strip()
            if name:
                slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
                brands.append(Brand(id=slug, name=name))
        if not brands:
            raise CatalogError("no brand names given")
        return cls(brands)
