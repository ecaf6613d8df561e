"""Fitting a captioner on clips held in memory.

The smallest complete training loop: AdamW, linear warm-up, gradient clipping. The tests use it to
prove that encoder, denoiser, sampler and LM head learn together (a handful of clips must come
back with their exact captions); ``edge-dac train`` builds on the same step.
"""

from __future__ import annotations

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
    """Train on (clips, samples) waveforms and one caption each; returns the loss history."""
    options = options or FitOptions()
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    audio = captioner.fit_length(audio.float())
    optimizer = make_optimizer(captioner, options.learning_rate, options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, options.warmup_steps))
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
