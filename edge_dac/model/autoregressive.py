"""Autoregressive baseline decoder: a causal transformer with cross-attention and a KV cache.

It shares the audio encoder and tokenizer with DAC so that speed and quality claims compare
decoders, not encoders. Greedy and beam decoding; cross-attention keys and values are computed
once per clip, self-attention keys and values are cached per generated token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edge_dac.model.dims import ModelDims
from edge_dac.model.layers import Block, KVCache


@dataclass
class ARLosses:
    total: torch.Tensor
    cross_entropy: torch.Tensor
    token_accuracy: torch.Tensor


class ARDecoder(nn.Module):
    def __init__(self, dims: ModelDims, bos_id: int, eos_id: int, pad_id: int):
        super().__init__()
        self.dims = dims
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        width = dims.decoder_width
        self.token_embedding = nn.Embedding(dims.vocab_size, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        # +1: the [BOS] position in front of the caption.
        self.positions = nn.Parameter(torch.randn(dims.max_caption_tokens + 1, width) * 0.02)
        self.audio_proj = nn.Linear(dims.encoder_width, width)
        self.blocks = nn.ModuleList(
            Block(width, dims.decoder_heads, cross_attention=True, dropout=dims.dropout)
            for _ in range(dims.decoder_layers)
        )
        self.norm = nn.LayerNorm(width)

    def audio_kv(self, audio_features: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys and values of every block, computed once per clip."""
        audio = self.audio_proj(audio_features)
        return [block.cross_attn.project_context(audio) for block in self.blocks]

    def forward(
        self,
        tokens: torch.Tensor,
        audio_kv: list[tuple[torch.Tensor, torch.Tensor]],
        cache: KVCache | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positions[offset : offset + tokens.shape[1]]
        for layer, block in enumerate(self.blocks):
            x = block(x, context_kv=audio_kv[layer], causal=True, cache=cache, layer=layer)
        # The LM head is tied to the token embedding (fewer weights; one table to save).
        return F.linear(self.norm(x), self.token_embedding.weight)

    def loss(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> ARLosses:
        """Teacher-forced cross-entropy; ``tokens`` = caption + [EOS], padded with [PAD]."""
        inputs = torch.cat([torch.full_like(tokens[:, :1], self.bos_id), tokens[:, :-1]], dim=1)
        logits = self(inputs, self.audio_kv(audio_features))
        mask = tokens != self.pad_id
        cross_entropy = F.cross_entropy(logits.transpose(1, 2).float(), tokens, ignore_index=self.pad_id)
        accuracy = ((logits.argmax(-1) == tokens) & mask).sum() / mask.sum()
        return ARLosses(cross_entropy, cross_entropy, accuracy)

    @torch.no_grad()
    def greedy(
        self, audio_features: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (batch, 1, length) and their log-probabilities; stops when every row ended."""
        return self.beam_search(audio_features, beam_size=1, bias=bias)

    @torch.no_grad()
    def beam_search(
        self, audio_features: torch.Tensor, beam_size: int = 3, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beams (batch, beam_size, length) best first, with per-token log-probabilities.
        ``bias``: (batch, vocab), added to every step's logits (the event guidance of decoding.py)."""
        batch, device = audio_features.shape[0], audio_features.device
        length = self.dims.max_caption_tokens
        rows = batch * beam_size
        audio_kv = self.audio_kv(audio_features.repeat_interleave(beam_size, dim=0))
        cache = KVCache()
        tokens = torch.full((rows, length), self.pad_id, dtype=torch.long, device=device)
        token_log_probs = torch.zeros((rows, length), device=device)
        # Only the first beam of each clip is alive at the start, so beams do not start as copies.
        beam_scores = torch.full((batch, beam_size), float("-inf"), device=device)
        beam_scores[:, 0] = 0.0
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        current = torch.full((rows, 1), self.bos_id, dtype=torch.long, device=device)
        row_bias = bias.float().repeat_interleave(beam_size, dim=0) if bias is not None else None
        for step in range(length):
            logits = self(current, audio_kv, cache=cache, offset=step)[:, -1].float()
            if row_bias is not None:
                logits = logits + row_bias
            log_probs = torch.log_softmax(logits, dim=-1)
            # A finished beam only extends with [PAD] at no cost, so its score stays fixed.
            log_probs[finished] = float("-inf")
            log_probs[finished, self.pad_id] = 0.0
            vocab = log_probs.shape[-1]
            candidates = (beam_scores.view(rows, 1) + log_probs).view(batch, beam_size * vocab)
            beam_scores, flat = candidates.topk(beam_size, dim=-1)
            source = (flat // vocab + torch.arange(batch, device=device)[:, None] * beam_size).view(-1)
            next_token = (flat % vocab).view(-1)
            cache.reorder(source)
            tokens, token_log_probs = tokens[source], token_log_probs[source]
            step_log_prob = log_probs[source, next_token]
            tokens[:, step] = next_token
            token_log_probs[:, step] = step_log_prob
            finished = finished[source] | (next_token == self.eos_id) | (next_token == self.pad_id)
            current = next_token[:, None]
            if bool(finished.all()):
                break
        return tokens.view(batch, beam_size, length), token_log_probs.view(batch, beam_size, length)
