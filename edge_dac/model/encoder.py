"""Audio encoder: a small convolutional stem that shortens time, then a transformer."""

from __future__ import annotations

import math

import torch
from torch import nn

from edge_dac.model.dims import ModelDims
from edge_dac.model.layers import Block, sinusoids


class AudioEncoder(nn.Module):
    """(batch, n_mels, frames) log-mel -> (batch, frames / stride, encoder_width)."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        width = dims.encoder_width
        stem: list[nn.Module] = [nn.Conv1d(dims.n_mels, width, kernel_size=3, padding=1), nn.GELU()]
        for _ in range(int(math.log2(dims.encoder_stride))):
            stem += [nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1), nn.GELU()]
        self.stem = nn.Sequential(*stem)
        self.register_buffer("positions", sinusoids(dims.max_encoder_frames, width), persistent=False)
        self.blocks = nn.ModuleList(
            Block(width, dims.encoder_heads, dropout=dims.dropout) for _ in range(dims.encoder_layers)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.stem(mel).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
