"""A randomly initialised CLIP model in a local folder, loadable exactly like a downloaded one.

For tests and benchmarks on machines that cannot download weights: `write_random_clip_model` saves a
`CLIPModel` with random weights (preset sizes), the real CLIP BPE tokenizer and a
`preprocessor_config.json`, so that `ClipDetector` with `model=<folder>` goes through the same
loading, tokenising and preprocessing code a user runs with the real weights. Its scores mean
nothing; its shapes, vocabulary and speed are those of the real thing.

The tokenizer's vocabulary is built from `bpe_simple_vocab_16e6.txt.gz`, the BPE merges file that
ships in the `open-clip-torch` wheel (install it with `pip install --no-deps open-clip-torch`); the
package is located without importing it (importing it needs torchvision).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: OpenAI CLIP's image normalisation, as in its preprocessor_config.json
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: 256 bytes + 256 end-of-word bytes + 48894 merges + 2 special tokens
CLIP_VOCAB_SIZE = 49408
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"

PRESETS: dict[str, dict[str, Any]] = {
    # the sizes of openai/clip-vit-base-patch32
    "vit-b-32": {
        "projection_dim": 512,
        "vision": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "patch_size": 32,
            "image_size": 224,
        },
        "text": {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
        },
    },
    # a few small layers: loads and runs in well under a second, for tests
    "tiny": {
        "projection_dim": 32,
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "patch_size": 8,
            "image_size": 32,
        },
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
        },
    },
}


class RandomClipModelError(RuntimeError):
    """The random CLIP folder cannot be written (open-clip-torch missing, unknown preset)."""


def clip_bpe_path() -> Path:
    """The CLIP BPE merges file shipped in the installed open-clip-torch wheel (not imported)."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / BPE_FILE
        if path.is_file():
            return path
    raise RandomClipModelError(
        f"the CLIP BPE vocabulary ({BPE_FILE}) was not found: install open-clip-torch "
        "(pip install --no-deps open-clip-torch) to build a CLIP tokenizer offline"
    )


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's (and GPT-2's) reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_vocab(bpe_path: str | Path | None = None) -> tuple[dict[str, int], list[str]]:
    """The CLIP vocabulary (token -> id) and merges ("a b" lines, in rank order).

    Built the way OpenAI's / open_clip's SimpleTokenizer builds it, so ids match the real
    tokenizer: byte alphabet, the same with "</w>", one token per merge, then the two specials.
    """
    lines = gzip.open(bpe_path or clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens.extend("".join(p) for p in pairs)
    tokens.extend(["<|startoftext|>", "<|endoftext|>"])
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise RandomClipModelError(f"{bpe_path}: built {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    return vocab, [" ".join(p) for p in pairs]


def write_clip_tokenizer(folder: str | Path, bpe_path: str | Path | None = None):
    """Save the real CLIP tokenizer into `folder`; returns the tokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab(bpe_path)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    try:  # transformers 5.x: the tokenizers-backed class takes the vocabulary and merges
        # (as pairs, which its tokenizers BPE takes, though transformers annotates merges as list[str])
        pairs = [tuple(m.split()) for m in merges]
        tokenizer = CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=77)  # type: ignore[arg-type]
    except TypeError:  # transformers 4.x: the files
        tokenizer = CLIPTokenizer(vocab_file=str(vocab_file), merges_file=str(merges_file), model_max_length=77)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def write_random_clip_model(folder: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """A randomly initialised CLIP model, its tokenizer and preprocessor config, in `folder`.

    `preset` is "tiny" (small layers, 32-pixel images, for tests) or "vit-b-32" (the sizes of
    openai/clip-vit-base-patch32, for timings). The same seed gives the same weights.
    """
    if preset not in PRESETS:
        raise RandomClipModelError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    bpe = clip_bpe_path()  # fail before the slow part
    import torch
    from transformers import CLIPConfig, CLIPModel

    spec = PRESETS[preset]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = CLIPConfig(
        text_config={**spec["text"], "vocab_size": CLIP_VOCAB_SIZE, "projection_dim": spec["projection_dim"]},
        vision_config={**spec["vision"], "projection_dim": spec["projection_dim"]},
        projection_dim=spec["projection_dim"],
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(str(folder))
    write_clip_tokenizer(folder, bpe)
    size = int(spec["vision"]["image_size"])
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "do_resize": True,
                "size": {"shortest_edge": size},
                "do_center_crop": True,
                "crop_size": {"height": size, "width": size},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD),
                "do_convert_rgb": True,
                "resample": 3,
            },
            indent=2,
        )
    )
    log.info("random CLIP (%s, seed %d) written to %s", preset, seed, folder)
    return folder
