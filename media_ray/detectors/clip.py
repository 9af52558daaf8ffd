"""`clip`: zero-shot brand detection with a CLIP model (transformers), on the frame and a tile grid.

Each frame is cut into crops: the whole frame (`whole_frame`) and a `tiles` grid (columns x rows,
neighbours sharing `overlap` of a tile). All crops of all frames of a batch are fitted to the
model's input size with OpenCV (no torchvision), normalised with the model's mean/std and embedded
in a few chunked forward passes. Every crop is then scored against every brand:

* text: each brand has one class embedding, the normalised mean of its prompts' embeddings
  (`templates` filled with its name and each alias, plus the brand's own `prompts`); each
  `background_prompts` entry is a class of its own. `p_text` is the softmax, at the model's logit
  scale, of the crop's cosine similarity with all brand and background classes, so that a crop
  without a logo puts its mass on the background classes.
* exemplars (brands with a reference image): the image is rendered (alpha over a white and a black
  background, centred on a square) and embedded; a crop's similarity with a brand is the best over
  its renders, and `q` is the softmax of those similarities over the brands with images.

The score of a brand with an image is `(1 - w) * p_text + w * P * q`, with `w` the
`exemplar_weight` and `P` the text mass of all brands with images on that crop: the text decides
how much of the crop is "one of these logos" rather than background, the exemplars help decide
which one. Brands without an image score `p_text`. The scores of one crop sum to at most 1.

A brand's score in a frame is its best over the crops; the frame gets one detection per brand
whose score reaches `min_score`, with the box of the winning tile in source pixels (None when the
whole frame wins). Text and exemplar embeddings are computed once per catalogue.

Models are loaded once per process and shared by every detector instance that names the same
model, device and dtype.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import cv2
import numpy as np
from pydantic import Field, field_validator

from media_ray.catalog import BrandCatalog
from media_ray.detectors import Detector, DetectorError, DetectorParams
from media_ray.model import Detection, FrameBatch, FrameResult, empty_results

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
#: OpenAI CLIP's image normalisation, used when the model folder has no preprocessor_config.json
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_TEMPLATES = [
    "the {name} logo",
    "a photo of the {name} logo",
    "the {name} logo on a sign",
    "the {name} brand",
]
DEFAULT_BACKGROUND = [
    "a photo",
    "a plain background",
    "a photo with no logo",
    "a photo of people",
    "a photo of a landscape",
    "a photo of a room",
    "a blurry photo",
]
#: backgrounds the reference images are rendered on, RGB
EXEMPLAR_BACKGROUNDS = ((255, 255, 255), (0, 0, 0))
#: share of the square the rendered reference image fills
EXEMPLAR_FILL = 0.8
NETWORK_CHECK_S = 2.0
HINT = "point --clip-model (detectors.clip.model) at a local folder holding a CLIP model"


class ClipParams(DetectorParams):
    model: str = Field(DEFAULT_MODEL, description="Hugging Face model id or local folder of a CLIPModel")
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1'")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="weights and activations; float16 only on cuda (cpu falls back to float32)")
    whole_frame: bool = Field(True, description="score the whole frame as one crop")
    tiles: tuple[int, int] = Field((2, 2), description="tile grid, columns x rows; (1, 1) adds no tiles "
                                                       "beyond the whole frame; an int n means n x n")
    overlap: float = Field(0.2, ge=0.0, le=0.5, description="share of a tile its neighbour overlaps")
    resize: Literal["pad", "squash", "crop"] = Field(
        "pad", description="how a crop meets the square input: pad (keep all, letterbox), squash, "
                           "crop (centre, loses the sides)")
    min_score: float = Field(0.5, ge=0.0, le=1.0)
    exemplar_weight: float = Field(0.5, ge=0.0, le=1.0, description="weight of reference images "
                                                                    "against text prompts")
    chunk: int = Field(64, ge=1, description="crops per forward pass")
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES), min_length=1)
    background_prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKGROUND), min_length=1)

    @field_validator("tiles", mode="before")
    @classmethod
    def _square_grid(cls, v: Any) -> Any:
        if isinstance(v, int):
            return (v, v)
        if isinstance(v, str) and "x" in v.lower():  # "3x2" from an environment variable
            return tuple(int(p) for p in v.lower().split("x", 1))
        return v

    @field_validator("tiles")
    @classmethod
    def _grid_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(1 <= n <= 8 for n in v):
            raise ValueError("tile columns and rows must be 1..8")
        return v

    @field_validator("templates")
    @classmethod
    def _has_name(cls, v: list[str]) -> list[str]:
        for t in v:
            if "{name}" not in t:
                raise ValueError(f"template {t!r} has no {{name}}")
            try:
                t.format(name="x")
            except (IndexError, KeyError, ValueError) as e:
                raise ValueError(f"template {t!r}: {e}") from None
        return v


# ---------------------------------------------------------------------------------------------
# where the weights are


def _is_local(model: str) -> bool:
    """Whether `model` names a folder rather than a hub id."""
    return (os.path.isabs(model) or model.startswith((".", "~")) or os.path.exists(model)
            or model.count("/") > 1 or "\\" in model)


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
    return any(_cached_file(repo_id, f) is not None for f in (
        "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
        "pytorch_model.bin.index.json"))


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


def _model_reason(model: str) -> str | None:
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


def _norm_constants(model: str, local: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    path = Path(model).expanduser() / "preprocessor_config.json" if local \
        else _cached_file(model, "preprocessor_config.json")
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
        reason = _model_reason(model)
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
        loaded = _Clip(net, tokenizer, dev, torch_dtype, (int(size[0]), int(size[1])), mean, std,
                       logit_scale, max_length)
        _MODELS[key] = loaded
        n = sum(p.numel() for p in net.parameters())
        log.info("clip: loaded %s on %s (%s, %.1fM parameters, input %dx%d)", model, dev, dtype,
                 n / 1e6, size[1], size[0])
        return loaded


def _pooled(out: Any):
    """The embedding from get_*_features: a tensor (transformers 4) or an output object (5)."""
    if hasattr(out, "pooler_output"):
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[1] if len(out) > 1 else out[0]
    return out


# ---------------------------------------------------------------------------------------------
# geometry and pixels


def crop_boxes(width: int, height: int, tiles: tuple[int, int], overlap: float,
               whole_frame: bool = True) -> list[tuple[int, int, int, int]]:
    """The crops of a frame, x0, y0, x1, y1 in pixels: the whole frame first, then the grid."""
    boxes: list[tuple[int, int, int, int]] = []
    if whole_frame:
        boxes.append((0, 0, width, height))
    cols, rows = tiles
    if (cols, rows) == (1, 1) and whole_frame:
        return boxes

    def spans(length: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, length)]
        size = length / (n - (n - 1) * overlap)
        step = size * (1 - overlap)
        out = []
        for i in range(n):
            a = int(round(i * step))
            b = length if i == n - 1 else int(round(i * step + size))
            out.append((a, max(b, a + 1)))
        return out

    for y0, y1 in spans(height, rows):
        for x0, x1 in spans(width, cols):
            boxes.append((x0, y0, x1, y1))
    return boxes


def fit_image(img: np.ndarray, size: tuple[int, int], mode: str, fill: tuple[int, int, int]) -> np.ndarray:
    """An RGB uint8 image brought to `size` (height, width): pad, squash or centre-crop."""
    th, tw = size
    h, w = img.shape[:2]
    if mode == "squash":
        scale_x, scale_y = tw / w, th / h
        interp = cv2.INTER_AREA if scale_x * scale_y < 1 else cv2.INTER_CUBIC
        return cv2.resize(img, (tw, th), interpolation=interp)
    scale = min(tw / w, th / h) if mode == "pad" else max(tw / w, th / h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(img, (nw, nh), interpolation=interp)
    if mode == "pad":
        out = np.empty((th, tw, 3), np.uint8)
        out[:] = fill
        y, x = (th - nh) // 2, (tw - nw) // 2
        out[y:y + nh, x:x + nw] = resized
        return out
    y, x = (nh - th) // 2, (nw - tw) // 2
    return np.ascontiguousarray(resized[y:y + th, x:x + tw])


def render_exemplar(rgba: np.ndarray, background: tuple[int, int, int], size: tuple[int, int],
                    fill: float = EXEMPLAR_FILL) -> np.ndarray:
    """A reference image (RGBA or RGB) over a plain background, centred, filling `fill` of the square."""
    if rgba.ndim == 2:
        rgba = np.repeat(rgba[..., None], 3, axis=2)
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0 if rgba.shape[2] == 4 else np.ones_like(rgb[..., :1])
    bg = np.asarray(background, np.float32)
    flat = (rgb * alpha + bg * (1 - alpha)).round().clip(0, 255).astype(np.uint8)
    th, tw = size
    inner = (max(1, int(th * fill)), max(1, int(tw * fill)))
    mark = fit_image(flat, inner, "pad", background)
    out = np.empty((th, tw, 3), np.uint8)
    out[:] = background
    y, x = (th - inner[0]) // 2, (tw - inner[1]) // 2
    out[y:y + inner[0], x:x + inner[1]] = mark
    return out


# ---------------------------------------------------------------------------------------------
# the detector


class ClipDetector(Detector):
    name = "clip"
    Params = ClipParams
    needs_weights = True

    def __init__(self, catalog: BrandCatalog, params: ClipParams | None = None):
        super().__init__(catalog, params)
        p: ClipParams = self.params
        self.clip = load_clip(p.model, p.device, p.dtype)
        self._fill = tuple(int(round(m * 255)) for m in self.clip.mean)
        self._build(catalog)

    @classmethod
    def unavailable_reason(cls, params: DetectorParams) -> str | None:
        model = getattr(params, "model", DEFAULT_MODEL)
        return _model_reason(model)

    def set_catalog(self, catalog: BrandCatalog) -> None:
        if catalog.version != getattr(self.catalog, "version", None) or not hasattr(self, "_text"):
            self._build(catalog)
        self.catalog = catalog

    # -- embeddings ---------------------------------------------------------------------------

    def _pixels(self, images: list[np.ndarray]):
        """(N, 3, H, W) model input from RGB uint8 images already at the input size."""
        import torch
        c = self.clip
        x = torch.from_numpy(np.stack(images)).to(c.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(c.mean, device=c.device).view(1, 3, 1, 1)
        std = torch.tensor(c.std, device=c.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std).to(c.dtype)

    def _embed_images(self, images: list[np.ndarray]):
        import torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.params.chunk):
                pixels = self._pixels(images[i:i + self.params.chunk])
                feats = _pooled(self.clip.model.get_image_features(pixel_values=pixels))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1))
        return torch.cat(out)

    def _embed_texts(self, texts: list[str]):
        import torch
        c = self.clip
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 256):
                enc = c.tokenizer(texts[i:i + 256], padding=True, truncation=True,
                                  max_length=c.max_length, return_tensors="pt")
                feats = _pooled(c.model.get_text_features(input_ids=enc["input_ids"].to(c.device),
                                                          attention_mask=enc["attention_mask"].to(c.device)))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1))
        return torch.cat(out)

    def brand_prompts(self, catalog: BrandCatalog | None = None) -> dict[str, list[str]]:
        """Each brand's text prompts: the templates filled with its names, then its own prompts."""
        out = {}
        for b in (catalog or self.catalog):
            prompts = [t.format(name=n) for n in b.names for t in self.params.templates]
            out[b.id] = list(dict.fromkeys([*prompts, *b.prompts]))
        return out

    def _build(self, catalog: BrandCatalog) -> None:
        """Text class embeddings and exemplar embeddings for a catalogue."""
        import torch
        prompts = self.brand_prompts(catalog)
        flat = [t for b in catalog for t in prompts[b.id]]
        owner = torch.tensor([k for k, b in enumerate(catalog) for _ in prompts[b.id]])
        emb = self._embed_texts(flat + list(self.params.background_prompts))
        brand_emb, bg_emb = emb[:len(flat)], emb[len(flat):]
        classes = torch.zeros(len(catalog), emb.shape[1], device=emb.device)
        classes.index_add_(0, owner.to(emb.device), brand_emb)
        classes = torch.nn.functional.normalize(classes, dim=-1)
        self._text = torch.cat([classes, bg_emb])  # (K + G, D)
        self._ids = [b.id for b in catalog]

        with_images = [k for k, b in enumerate(catalog) if b.image is not None]
        self._img_idx = torch.tensor(with_images, dtype=torch.long, device=emb.device)
        self._exemplars = None
        if with_images and self.params.exemplar_weight > 0:
            renders = [render_exemplar(catalog.brands[k].image, bg, self.clip.size)
                       for k in with_images for bg in EXEMPLAR_BACKGROUNDS]
            ex = self._embed_images(renders)
            self._exemplars = ex.view(len(with_images), len(EXEMPLAR_BACKGROUNDS), -1)  # (Ki, E, D)
        log.info("clip: catalogue %s: %d brands, %d prompts, %d with reference images",
                 catalog.version, len(catalog), len(flat), len(with_images))

    # -- scoring ------------------------------------------------------------------------------

    def score_crops(self, crops):
        """(N, K) brand scores in 0..1 for (N, D) normalised crop embeddings."""
        import torch
        scale = self.clip.logit_scale
        k = len(self._ids)
        p_text = torch.softmax(scale * crops @ self._text.T, dim=-1)[:, :k]
        if self._exemplars is None or len(self._img_idx) == 0:
            return p_text
        w = self.params.exemplar_weight
        sims = torch.einsum("nd,ked->nke", crops, self._exemplars).amax(dim=-1)  # (N, Ki)
        q = torch.softmax(scale * sims, dim=-1)
        p_img = p_text[:, self._img_idx]
        mass = p_img.sum(dim=-1, keepdim=True)
        scores = p_text.clone()
        scores[:, self._img_idx] = (1 - w) * p_img + w * mass * q
        return scores

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        results = empty_results(batch)
        if len(batch) == 0:
            return results
        p: ClipParams = self.params
        width, height = batch.size
        boxes = crop_boxes(width, height, p.tiles, p.overlap, p.whole_frame)
        whole = [b == (0, 0, width, height) for b in boxes]
        images = [fit_image(frame[y0:y1, x0:x1], self.clip.size, p.resize, self._fill)
                  for frame in batch.frames for (x0, y0, x1, y1) in boxes]
        crops = self._embed_images(images)
        scores = self.score_crops(crops).view(len(batch), len(boxes), -1)  # (F, C, K)
        best, where = scores.max(dim=1)  # (F, K)
        best, where = best.cpu().numpy(), where.cpu().numpy()
        for f, result in enumerate(results):
            found = []
            for k in np.flatnonzero(best[f] >= p.min_score):
                c = int(where[f, k])
                box = None if whole[c] else tuple(float(v) for v in boxes[c])
                found.append(Detection(label=self._ids[k], score=float(min(max(best[f, k], 0.0), 1.0)),
                                       box=box, detector=self.name))
            found.sort(key=lambda d: -d.score)
            result.detections = found
        return results
