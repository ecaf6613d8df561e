"""Fitting a captioner on clips held in memory.

The smallest complete training loop: AdamW, linear warm-up, gradient clipping. The tests use it to
prove that encoder, denoiser, sampler and LM head learn together (a handful of clips must come
back with their exact captions); ``edge-dac train`` builds on the same step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from edge_dac.model.captioner import Captioner


@dataclass(frozen=True)
class FitOptions:
    steps: int = 300
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    grad_clip: float = 1.0
    seed: int = 0


def make_optimizer(captioner: Captioner, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms and embeddings (the usual split)."""
    decay, no_decay = [], []
    for name, parameter in captioner.named_parameters():
        if not parameter.requires_grad:
            continue
        is_matrix = parameter.ndim >= 2 and "embedding" not in name and "positions" not in name
        (decay if is_matrix else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.98))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float = 0.1) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``floor`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def training_step(
    captioner: Captioner,
    optimizer: torch.optim.Optimizer,
    audio: torch.Tensor,
    captions: Sequence[str],
    grad_clip: float,
) -> dict[str, float]:
    """One optimisation step; returns the losses as floats."""
    captioner.train()
    losses = captioner.loss(audio, captions)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(captioner.parameters(), grad_clip)
    optimizer.step()
    return {name: float(value.detach()) for name, value in losses.items()}


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
    for _ in bar:
        rows = torch.randperm(audio.shape[0], generator=generator)[: options.batch_size]
        losses = training_step(
            captioner, optimizer, audio[rows], [captions[i] for i in rows.tolist()], options.grad_clip
        )
        schedule.step()
        history.append(losses)
        bar.set_postfix(loss=f"{losses['total']:.3f}", acc=f"{losses['token_accuracy']:.2f}")
    captioner.eval()
    return history
