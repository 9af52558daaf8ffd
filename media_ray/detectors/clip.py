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

import logging
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from media_ray.catalog import BrandCatalog
from media_ray.detectors import Detector, DetectorParams
from media_ray.detectors.clip_crops import EXEMPLAR_BACKGROUNDS, crop_boxes, fit_image, render_exemplar
from media_ray.detectors.clip_model import DEFAULT_MODEL, load_clip, model_reason, pooled
from media_ray.model import FrameBatch, FrameResult, empty_results

__all__ = [
    "ClipDetector",
    "ClipParams",
    "DEFAULT_MODEL",
    "crop_boxes",
    "fit_image",
    "load_clip",
    "render_exemplar",
]

log = logging.getLogger(__name__)

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


class ClipParams(DetectorParams):
    """Which CLIP model runs where, how frames are cut into crops and how crops are scored."""

    model: str = Field(
        DEFAULT_MODEL,
        description="Hugging Face model id, or local folder, of a CLIP model (transformers CLIPModel)",
    )
    device: str = Field(
        "auto",
        description="where the model runs: 'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1'",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="number type of weights and activations; float16 only on cuda (cpu falls back to float32)",
    )
    whole_frame: bool = Field(True, description="score the whole frame as one crop (a detection won by it has no box)")
    tiles: tuple[int, int] = Field(
        (2, 2),
        description="tile grid the frame is also cut into, columns "
        "x rows; (1, 1) adds no tiles beyond the whole "
        "frame; an int n means n x n",
    )
    overlap: float = Field(0.2, ge=0.0, le=0.5, description="share of a tile its neighbour overlaps")
    resize: Literal["pad", "squash", "crop"] = Field(
        "pad",
        description="how a crop meets the square input: pad (keep all, letterbox), squash, "
        "crop (centre, loses the sides)",
    )
    min_score: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="a brand whose best score over a frame's crops reaches this is reported in that frame",
    )
    exemplar_weight: float = Field(0.5, ge=0.0, le=1.0, description="weight of reference images against text prompts")
    chunk: int = Field(64, ge=1, description="crops per forward pass")
    templates: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TEMPLATES),
        min_length=1,
        description="text prompts for every brand, each filled with its name and with each alias in place of {name}",
    )
    background_prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BACKGROUND),
        min_length=1,
        description="text prompts of crops without a logo; each is a class of its own, which "
        "takes the score of a crop showing no brand",
    )

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


class ClipDetector(Detector):
    name = "clip"
    Params = ClipParams
    params: ClipParams
    needs_weights = True

    def __init__(self, catalog: BrandCatalog, params: ClipParams | None = None):
        super().__init__(catalog, params)
        p = self.params
        self.clip = load_clip(p.model, p.device, p.dtype)
        self._fill = tuple(int(round(m * 255)) for m in self.clip.mean)
        self._build(catalog)

    @classmethod
    def unavailable_reason(cls, params: DetectorParams) -> str | None:
        model = getattr(params, "model", DEFAULT_MODEL)
        return model_reason(model)

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
                pixels = self._pixels(images[i : i + self.params.chunk])
                feats = pooled(self.clip.model.get_image_features(pixel_values=pixels))
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1))
        return torch.cat(out)

    def _embed_texts(self, texts: list[str]):
        import torch

        c = self.clip
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 256):
                enc = c.tokenizer(
                    texts[i : i + 256],
                    padding=True,
                    truncation=True,
                    max_length=c.max_length,
                    return_tensors="pt",
                )
                feats = pooled(
                    c.model.get_text_features(
                        input_ids=enc["input_ids"].to(c.device),
                        attention_mask=enc["attention_mask"].to(c.device),
                    )
                )
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1))
        return torch.cat(out)

    def brand_prompts(self, catalog: BrandCatalog | None = None) -> dict[str, list[str]]:
        """Each brand's text prompts: the templates filled with its names, then its own prompts."""
        out = {}
        for b in catalog or self.catalog:
            prompts = [t.format(name=n) for n in b.names for t in self.params.templates]
            out[b.id] = list(dict.fromkeys([*prompts, *b.prompts]))
        return out

    def _build(self, catalog: BrandCatalog) -> None:
        """Text class embeddings and exemplar embeddings for a catalogue."""
        import torch

        prompts = self.brand_prompts(catalog)
        flat = [t for b in catalog for t in prompts[b.id]]
        owner = torch.tensor([k for k, b in enumerate(catalog) for _ in prompts[b.id]], dtype=torch.long)
        emb = self._embed_texts(flat + list(self.params.background_prompts))
        brand_emb, bg_emb = emb[: len(flat)], emb[len(flat) :]
        classes = torch.zeros(len(catalog), emb.shape[1], device=emb.device)
        classes.index_add_(0, owner.to(emb.device), brand_emb)
        classes = torch.nn.functional.normalize(classes, dim=-1)
        self._text = torch.cat([classes, bg_emb])  # (K + G, D)
        self._ids = [b.id for b in catalog]

        with_images = [k for k, b in enumerate(catalog) if b.image is not None]
        self._img_idx = torch.tensor(with_images, dtype=torch.long, device=emb.device)
        self._exemplars = None
        if with_images and self.params.exemplar_weight > 0:
            renders = [
                render_exemplar(image, bg, self.clip.size)
                for k in with_images
                if (image := catalog.brands[k].image) is not None  # all of them: with_images
                for bg in EXEMPLAR_BACKGROUNDS
            ]
            ex = self._embed_images(renders)
            self._exemplars = ex.view(len(with_images), len(EXEMPLAR_BACKGROUNDS), -1)  # (Ki, E, D)
        log.info(
            "clip: catalogue %s: %d brands, %d prompts, %d with reference images",
            catalog.version,
            len(catalog),
            len(flat),
            len(with_images),
        )

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
        if len(batch) == 0 or not self._ids:  # no frames, or no brands to score them for
            return results
        p = self.params
        width, height = batch.size
        boxes = crop_boxes(width, height, p.tiles, p.overlap, p.whole_frame)
        whole = [b == (0, 0, width, height) for b in boxes]
        images = [
            fit_image(frame[y0:y1, x0:x1], self.clip.size, p.resize, self._fill)
            for frame in batch.frames
            for (x0, y0, x1, y1) in boxes
        ]
        crops = self._embed_images(images)
        scores = self.score_crops(crops).view(len(batch), len(boxes), -1)  # (F, C, K)
        best, where = scores.max(dim=1)  # (F, K)
        best, where = best.cpu().numpy(), where.cpu().numpy()
        for f, result in enumerate(results):
            found = []
            for k in np.flatnonzero(best[f] >= p.min_score):
                c = int(where[f, k])
                x0, y0, x1, y1 = boxes[c]
                box = None if whole[c] else (float(x0), float(y0), float(x1), float(y1))
                found.append(self.detection(self._ids[k], best[f, k], box, (width, height)))
            found.sort(key=lambda d: -d.score)
            result.detections = found
        return results
