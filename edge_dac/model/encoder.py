"""Audio encoder: a small convolutional stem that shortens time, then a transformer."""

from __future__ import annotations

import math

import torch
from torch import nn

from edge_dac.model.dims import ModelDims
from edge_dac.model.frontend import each_chunk
from edge_dac.model.layers import Block, sinusoids

_CNN_BLOCKS = 3  # each halves the mel bins: 64 -> 8


class MonoConv2d(nn.Conv2d):
    """``nn.Conv2d(1, channels, kernel_size=3, padding=1, bias=False)``; in eager PyTorch computed as
    the weighted sum of the input's nine shifted copies, the same numbers at a quarter of the cost
    (a one-channel convolution is the slowest case of PyTorch's CPU kernels: 11.6 against 2.6 ms on
    a 64 x 1000 log-mel, one thread). Traced for export or compilation it stays a convolution, which
    ONNX Runtime runs faster than either (1.2 ms)."""

    def __init__(self, channels: int):
        super().__init__(1, channels, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return super().forward(x)
        height, width = x.shape[-2:]
        padded = nn.functional.pad(x, (1, 1, 1, 1))
        shifted = torch.cat([padded[:, :, i : i + height, j : j + width] for i in range(3) for j in range(3)], dim=1)
        return torch.einsum("ok,bkhw->bohw", self.weight.flatten(1), shifted)


class AvgPool(nn.Module):
    """``nn.AvgPool2d(kernel_size=(2, time_pool), ceil_mode=True)``; in eager PyTorch, when both
    sides divide evenly (every 10 s window and 2 s chunk), the mean of strided slices: the same sums
    at a third of the cost (12 of the encoder's 76 ms were pooling). Traced, it stays a pooling op,
    which ONNX Runtime runs faster than slices."""

    def __init__(self, time_pool: int):
        super().__init__()
        self.time_pool = time_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if torch.compiler.is_compiling() or height % 2 or width % self.time_pool:
            return nn.functional.avg_pool2d(x, kernel_size=(2, self.time_pool), ceil_mode=True)
        if self.time_pool == 1:
            return (x[..., 0::2, :] + x[..., 1::2, :]) * 0.5
        return (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.25


class SpectrogramCNN(nn.Module):
    """(batch, n_mels, frames) -> (batch, frames / stride, width): three conv blocks over time and
    frequency (3x3 conv, group norm, GELU, 2x2 or 2x1 average pooling), then the remaining mel bins
    and channels flattened into one vector per frame. GroupNorm rather than BatchNorm: no running
    statistics, so the result does not depend on the batch (DDP, EMA and export stay simple)."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        time_pools = int(math.log2(dims.encoder_stride))
        layers: list[nn.Module] = []
        channels_in = 1
        for block in range(_CNN_BLOCKS):
            channels = dims.encoder_channels * 2**block
            time_pool = 2 if block < time_pools else 1
            conv = MonoConv2d(channels) if block == 0 else nn.Conv2d(channels_in, channels, 3, padding=1, bias=False)
            layers += [
                conv,
                nn.GroupNorm(min(8, channels), channels),
                nn.GELU(),
                AvgPool(time_pool),
            ]
            channels_in = channels
        self.blocks = nn.Sequential(*layers)
        self.extra_stride = 2 ** max(0, time_pools - _CNN_BLOCKS)
        flat = channels_in * (dims.n_mels // 2**_CNN_BLOCKS)
        self.project = nn.Conv1d(flat, dims.encoder_width, kernel_size=self.extra_stride, stride=self.extra_stride)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.blocks(mel.unsqueeze(1))  # (batch, channels, mels, frames)
        x = x.flatten(1, 2)  # (batch, channels * mels, frames)
        return nn.functional.gelu(self.project(x))


def conv1d_stem(dims: ModelDims) -> nn.Sequential:
    """Whisper's stem: mel bins as channels, stride-2 convolutions shorten time."""
    width = dims.encoder_width
    stem: list[nn.Module] = [nn.Conv1d(dims.n_mels, width, kernel_size=3, padding=1), nn.GELU()]
    for _ in range(int(math.log2(dims.encoder_stride))):
        stem += [nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1), nn.GELU()]
    return nn.Sequential(*stem)


class AudioEncoder(nn.Module):
    """(batch, n_mels, frames) log-mel -> (batch, frames / stride, encoder_width).

    A streaming encoder (``dims.encoder_chunk_seconds``) is ``mix`` of its chunks' ``encode_chunk``:
    the stem and the first ``encoder_chunk_layers`` blocks see one chunk (positions counted within
    it), the remaining blocks the whole window (positions counted from the window's start).
    """

    def __init__(self, dims: ModelDims):
        super().__init__()
        width = dims.encoder_width
        self.stem = SpectrogramCNN(dims) if dims.encoder_stem == "cnn2d" else conv1d_stem(dims)
        self.register_buffer("positions", sinusoids(dims.max_encoder_frames, width), persistent=False)
        self.blocks = nn.ModuleList(
            Block(width, dims.encoder_heads, dropout=dims.dropout) for _ in range(dims.encoder_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.chunk_frames = dims.encoder_chunk_samples // dims.hop_length
        self.chunk_layers = dims.encoder_chunk_layers

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if not self.chunk_frames:
            return self.mix(self.encode_chunk(mel))
        return self.mix(each_chunk(mel, self.chunk_frames, self.encode_chunk, time_dim=1))

    def encode_chunk(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, chunk frames) -> the chunk's features before the window-level blocks."""
        x = self.stem(mel).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for block in self.blocks[: self.chunk_layers]:
            x = block(x)
        return x

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """A window's chunk features, joined in time order, -> its encoder features."""
        if self.chunk_frames:
            x = x + self.positions[: x.shape[1]]  # where in the window each chunk's frames are
        for block in self.blocks[self.chunk_layers :]:
            x = block(x)
        return self.norm(x)


class EventHead(nn.Module):
    """Sound event detection on the encoder frames: per-frame logits of each event class.

    Clip-level probabilities pool the frame probabilities by linear-softmax pooling,
    sum(p^2) / sum(p) over time: louder-than-average frames dominate, so a short event in a long
    clip still counts, where mean pooling dilutes it and max pooling trains a single frame.
    """

    def __init__(self, dims: ModelDims, width: int | None = None, prior: float = 0.02):
        super().__init__()
        width = width or dims.encoder_width
        # Dropout as in the head's A/B on YAMNet embeddings (0.3); inference and export never see it.
        hidden = dims.event_hidden
        self.hidden = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(0.3)) if hidden else None
        self.frame = nn.Linear(dims.event_hidden or width, len(dims.event_classes))
        # Start at a typical class's prior (a few of ~175 classes sound at a time): a fresh head
        # at logit 0 costs ~0.7 per class, and those gradients, summed over classes, scrambled a
        # pretrained encoder within 250 steps (docs/dac-recipe.md, stage 4).
        nn.init.constant_(self.frame.bias, math.log(prior / (1 - prior)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, width) encoder features or YAMNet embeddings -> (batch, frames, classes) logits."""
        return self.frame(features if self.hidden is None else self.hidden(features))

    @staticmethod
    def clip_probabilities(frame_logits: torch.Tensor) -> torch.Tensor:
        """(batch, frames, classes) logits -> (batch, classes) probabilities."""
        return EventHead.pool(torch.sigmoid(frame_logits.float()))

    @staticmethod
    def pool(frame_probabilities: torch.Tensor) -> torch.Tensor:
        """(batch, frames, classes) probabilities -> (batch, classes): the linear-softmax pooling."""
        p = frame_probabilities
        return (p * p).sum(dim=1) / p.sum(dim=1).clamp_min(1e-6)
