"""The optimiser, its learning-rate schedule and the exponential moving average of the weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from edge_dac.training.config import TrainConfig


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms and embeddings (the usual split)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
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


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate at the last step."""
    o = config.optim
    return o.learning_rate * warmup_cosine(step, o.warmup_steps, o.steps, floor=o.min_learning_rate / o.learning_rate)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Exponential moving average of the weights; the decay ramps up over the first steps so the
    average does not drag the random initial weights along for thousands of steps."""
    decay = min(decay, (1 + step) / (10 + step))
    for average, current in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if average.dtype.is_floating_point:
            average.lerp_(current, 1 - decay)
