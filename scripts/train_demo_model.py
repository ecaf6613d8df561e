"""Train a throwaway DAC model on the bundled demo scenes, so the README's main command runs
before a shipped default model exists. It memorises the demo captions; it is no real captioner."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from edge_dac.data.datasets import load_item_audio, load_manifest
from edge_dac.model import Captioner, ModelDims, save_captioner, train_tokenizer
from edge_dac.training.fit import FitOptions, fit_clips

ROOT = Path(__file__).resolve().parents[1]


def main(out: str = "runs/demo-model", progress: bool = True) -> None:
    """Train into ``out`` unless a model is already there; ``progress``: show the training bar."""
    if (Path(out) / "config.json").is_file():
        return
    manifest = load_manifest(ROOT / "edge_dac" / "assets" / "demo" / "manifest.jsonl")
    captions = [item.captions[0] for item in manifest.items]
    torch.manual_seed(0)
    tokenizer = train_tokenizer([c for item in manifest.items for c in item.captions], vocab_size=300)
    dims = ModelDims(
        kind="dac", vocab_size=len(tokenizer), max_audio_seconds=10.0, encoder_width=96, decoder_width=96,
        encoder_layers=2, decoder_layers=2, max_caption_tokens=20, embedding_dim=32, dropout=0.0,
        encoder_stride=8,
    )
    captioner = Captioner(dims, tokenizer)
    audio = [load_item_audio(item) for item in manifest.items]
    length = dims.max_audio_samples
    batch = torch.from_numpy(np.stack([np.pad(a[:length], (0, max(0, length - a.size))) for a in audio]))
    fit_clips(captioner, batch, captions, FitOptions(steps=400, batch_size=len(captions)), progress=progress)
    save_captioner(captioner, out, metadata={"purpose": "demo only: memorises the bundled demo captions"})
    if progress:
        print(f"demo model written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
