"""Transformer building blocks shared by the audio encoder and both caption decoders."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Fixed sinusoidal position table, (length, channels)."""
    half = channels // 2
    scales = torch.exp(-math.log(max_timescale) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * scales[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def timestep_features(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Sinusoidal features of a continuous diffusion time t in [0, 1], (batch,) -> (batch, channels)."""
    half = channels // 2
    scales = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = (t.float() * 1000.0)[:, None] * scales[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class KVCache:
    """Keys and values of past positions for incremental (autoregressive) self-attention."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer in self.keys:
            key = torch.cat([self.keys[layer], key], dim=2)
            value = torch.cat([self.values[layer], value], dim=2)
        self.keys[layer], self.values[layer] = key, value
        return key, value

    def reorder(self, index: torch.Tensor) -> None:
        """Follow beam search: keep the rows of the beams that survived."""
        for layer in self.keys:
            self.keys[layer] = self.keys[layer].index_select(0, index)
            self.values[layer] = self.values[layer].index_select(0, index)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of a context; computed once per clip for cross-attention."""
        return self.split_heads(self.key(context)), self.split_heads(self.value(context))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        query = self.split_heads(self.query(x))
        if context_kv is not None:
            key, value = context_kv
        else:
            key, value = self.project_context(x if context is None else context)
            if cache is not None:
                key, value = cache.update(layer, key, value)
        # With a cache, the new positions come last and may see everything before them.
        is_causal = causal and query.shape[2] > 1
        out = F.scaled_dot_product_attention(
            query, key, value, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
        )
        batch, _, length, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(batch, length, -1))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, MLP."""

    def __init__(self, width: int, heads: int, cross_attention: bool = False, dropout: float = 0.0):
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads, dropout)
        self.cross_attn_norm = nn.LayerNorm(width) if cross_attention else None
        self.cross_attn = Attention(width, heads, dropout) if cross_attention else None
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_norm(x), causal=causal, cache=cache, layer=layer))
        if self.cross_attn is not None:
            x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), context=context, context_kv=context_kv))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))
