"""Train a throwaway DAC model on the bundled demo scenes, so the README's main command runs
before a shipped default model exists. It memorises the demo captions; it is no real captioner.

``fit_clips`` is the smallest complete training loop (AdamW, warm-up then cosine decay, gradient
clipping) on clips held in memory; tests/test_learning.py uses it too, to prove that encoder,
denoiser, sampler and LM head learn together. ``edge-dac train`` is the real loop
(edge_dac/training/train.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_dac.data.datasets import load_item_audio, load_manifest
from edge_dac.model import Captioner, ModelDims, save_captioner, train_tokenizer
from edge_dac.training.optim import make_optimizer, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FitOptions:
    steps: int = 300
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0


def fit_clips(
    captioner: Captioner,
    audio: torch.Tensor,
    captions: Sequence[str],
    options: FitOptions | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train on (clips, samples) waveforms and one caption each; returns the loss history.

    Warm-up then cosine decay: the final low learning rate settles the weights, which matters
    when the result must reproduce captions exactly.
    """
    options = options or FitOptions()
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    audio = captioner.fit_length(audio.float())
    optimizer = make_optimizer(captioner, options.learning_rate, options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, options.warmup_steps, options.steps)
    )
    history = []
    bar = tqdm(range(options.steps), desc=f"fit {captioner.dims.kind}", disable=not progress, leave=False)
    captioner.train()
    for _ in bar:
        rows = torch.randperm(audio.shape[0], generator=generator)[: options.batch_size]
        losses = captioner.loss(audio[rows], [captions[i] for i in rows.tolist()])
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if options.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(captioner.parameters(), options.grad_clip)
        optimizer.step()
        schedule.step()
        history.append({name: float(value.detach()) for name, value in losses.items()})
        bar.set_postfix(loss=f"{history[-1]['total']:.3f}", acc=f"{history[-1]['token_accuracy']:.2f}")
    captioner.eval()
    return history


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
