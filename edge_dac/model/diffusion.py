"""DAC's caption decoder: continuous diffusion over token embeddings, decoded in parallel.

Tokens are embedded into a small continuous space (L2-normalised vectors), noised by a
variance-preserving process, and a transformer (self-attention over caption positions,
cross-attention to the audio features) denoises them. Choices, each measured (docs/dac-recipe.md):

* The denoiser predicts a distribution over the vocabulary at every position; its *expected
  embedding* is the x0 estimate (CDCD-style score interpolation). Training is cross-entropy on
  those logits plus MSE on the x0 estimate. Predicting x0 directly as a regression target and
  snapping it to the nearest token collapsed to a few frequent words in a prototype.
* Self-conditioning: the previous step's x0 estimate is a second input (LaDiC, Difformer).
* sqrt or cosine noise schedule; captions padded with [EOS] to a fixed length; adjacent repeated
  tokens collapsed after decoding.
* K candidates per clip come out of one batched pass (different starting noise); each carries the
  mean log-probability of its tokens as a score, and minimum Bayes risk picks the best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edge_dac.model.dims import ModelDims
from edge_dac.model.layers import Block, timestep_features


def signal_level(t: torch.Tensor, schedule: str) -> torch.Tensor:
    """alpha_bar(t): the share of signal variance left at diffusion time t in [0, 1]."""
    if schedule == "sqrt":  # Diffusion-LM: noise rises fast at first, keeps tokens hard to guess
        level = 1.0 - torch.sqrt(t + 1e-4)
    else:  # cosine (improved DDPM)
        s = 0.008
        level = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return level.clamp(1e-5, 1.0 - 1e-5)


@dataclass
class DiffusionLosses:
    total: torch.Tensor
    cross_entropy: torch.Tensor
    x0_mse: torch.Tensor
    token_accuracy: torch.Tensor


class DiffusionDecoder(nn.Module):
    """Denoiser over caption positions; also owns the token embedding and LM head."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        width, emb = dims.decoder_width, dims.embedding_dim
        self.token_embedding = nn.Embedding(dims.vocab_size, emb)
        nn.init.normal_(self.token_embedding.weight, std=1.0)
        self.input_proj = nn.Linear(2 * emb, width)  # noisy latent ++ self-conditioning estimate
        self.positions = nn.Parameter(torch.randn(dims.max_caption_tokens, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        # One vector per wording code, added at every position (like the time embedding).
        self.wording = nn.Embedding(dims.wording_codes, width) if dims.wording_codes else None
        if self.wording is not None:
            nn.init.normal_(self.wording.weight, std=0.02)
        self.audio_proj = nn.Linear(dims.encoder_width, width)
        # The event head's frame probabilities as extra memory tokens (ModelDims.event_memory): a
        # projection and a learned position per frame, appended to the projected audio.
        self.event_proj = nn.Linear(len(dims.event_classes), width) if dims.event_memory else None
        self.event_positions = nn.Parameter(torch.randn(dims.event_frames, width) * 0.02) if dims.event_memory else None
        self.blocks = nn.ModuleList(
            Block(width, dims.decoder_heads, cross_attention=True, dropout=dims.dropout)
            for _ in range(dims.decoder_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, dims.vocab_size)

    # -- the continuous token space -------------------------------------------------------------

    def embedding_table(self) -> torch.Tensor:
        """Normalised token embeddings, (vocab, emb): every token at radius scale * sqrt(emb)."""
        weight = F.normalize(self.token_embedding.weight, dim=-1)
        return weight * (self.dims.embedding_scale * math.sqrt(self.dims.embedding_dim))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.embedding_table())

    def expected_embedding(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=-1).to(logits.dtype) @ self.embedding_table()

    # -- one denoiser evaluation ----------------------------------------------------------------

    def prepare_audio(self, audio_features: torch.Tensor, events: torch.Tensor | None = None) -> torch.Tensor:
        """What the denoiser cross-attends to: the projected encoder frames, then (``event_memory``)
        one token per frame of the event head's probabilities ``events``, (batch, event frames, classes);
        a decoder without the memory ignores ``events``."""
        audio = self.audio_proj(audio_features)
        if self.event_proj is None or self.event_positions is None:
            return audio
        if events is None:
            raise ValueError("this DAC reads the event head's frame probabilities (event_memory): pass events")
        memory = self.event_proj(events.to(audio.dtype)) + self.event_positions[: events.shape[1]]
        return torch.cat([audio, memory], dim=1)

    def cross_attention_kv(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's cross-attention keys and values of the projected audio.

        They depend on the audio only, so sampling computes them once per clip instead of once per
        step and candidate (half of the sampler's work at 5 candidates otherwise).
        """
        return [block.cross_attn.project_context(audio) for block in self.blocks]

    def forward(
        self,
        noisy: torch.Tensor,
        t: torch.Tensor,
        self_cond: torch.Tensor,
        audio: torch.Tensor | None = None,
        audio_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        code: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits over the vocabulary, (batch, length, vocab), from x_t, t, the wording code of each
        row (batch,) and the projected audio (or its precomputed cross-attention keys and values)."""
        x = self.input_proj(torch.cat([noisy, self_cond], dim=-1))
        time = self.time_mlp(timestep_features(t, x.shape[-1]))
        if self.wording is not None:
            time = time + self.wording(torch.zeros_like(t, dtype=torch.long) if code is None else code)
        x = x + self.positions[: x.shape[1]] + time[:, None, :]
        for index, block in enumerate(self.blocks):
            x = block(x, context=audio, context_kv=None if audio_kv is None else audio_kv[index])
        return self.lm_head(self.norm(x))

    # -- training --------------------------------------------------------------------------------

    def noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        level = signal_level(t, self.dims.schedule)[:, None, None]
        return level.sqrt() * x0 + (1.0 - level).sqrt() * noise

    def ddim_step(self, noisy: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """Move x_t to x_{t_next} (deterministic DDIM) given an estimate of x0; t may be per row."""
        level = signal_level(t, self.dims.schedule).view(-1, 1, 1)
        next_level = signal_level(t_next, self.dims.schedule).view(-1, 1, 1)
        eps = (noisy - level.sqrt() * x0) / (1.0 - level).sqrt()
        return next_level.sqrt() * x0 + (1.0 - next_level).sqrt() * eps

    def loss(
        self,
        tokens: torch.Tensor,
        audio_features: torch.Tensor,
        token_weights: torch.Tensor,
        self_cond_prob: float = 0.5,
        unroll_prob: float = 0.5,
        mse_weight: float = 1.0,
        generator: torch.Generator | None = None,
        codes: torch.Tensor | None = None,
        events: torch.Tensor | None = None,
    ) -> DiffusionLosses:
        """Denoising loss on a batch of fixed-length token sequences (padded with [EOS]).

        Rows with self-conditioning first run the denoiser without gradient, as the sampler's
        previous step would. Of those, ``unroll_prob`` also take the sampler's next step: the input
        is re-noised from the model's own estimate to a lower noise level, so the model learns to
        correct its own mistakes instead of copying them (without it, few-step samples kept the
        errors of the first step; docs/dac-recipe.md).
        """
        batch = tokens.shape[0]
        device = tokens.device
        audio = self.prepare_audio(audio_features, events)
        x0 = self.embed(tokens)
        # Noise levels skewed towards pure noise (density 2t): there the caption must come from the
        # audio alone, which is what the first sampling steps ask of the model.
        t = torch.rand(batch, device=device, generator=generator).sqrt()
        noisy = self.noise(x0, t, torch.randn(x0.shape, device=device, generator=generator))
        self_cond = torch.zeros_like(x0)
        if self_cond_prob > 0:
            use_self_cond = torch.rand(batch, device=device, generator=generator) < self_cond_prob
            unroll = use_self_cond & (torch.rand(batch, device=device, generator=generator) < unroll_prob)
            with torch.no_grad():
                first = self.expected_embedding(self(noisy, t, self_cond, audio, code=codes))
                t_next = t * torch.rand(batch, device=device, generator=generator)
                stepped = self.ddim_step(noisy, first, t, t_next)
            self_cond = torch.where(use_self_cond[:, None, None], first, self_cond)
            noisy = torch.where(unroll[:, None, None], stepped, noisy)
            t = torch.where(unroll, t_next, t)
        logits = self(noisy, t, self_cond, audio, code=codes)
        token_loss = F.cross_entropy(logits.transpose(1, 2).float(), tokens, reduction="none")
        cross_entropy = (token_loss * token_weights).sum() / token_weights.sum()
        x0_mse = (self.expected_embedding(logits) - x0.detach()).square().mean(-1)
        x0_mse = (x0_mse * token_weights).sum() / token_weights.sum()
        accuracy = ((logits.argmax(-1) == tokens).float() * token_weights).sum() / token_weights.sum()
        return DiffusionLosses(cross_entropy + mse_weight * x0_mse, cross_entropy, x0_mse, accuracy)

    # -- sampling --------------------------------------------------------------------------------

    def candidate_codes(self, clips: int, candidates: int) -> torch.Tensor:
        """The wording code of each (clip, candidate) row: candidate k writes wording k (cycling), so
        K candidates are K wordings; all zeros for a model without codes."""
        codes = torch.arange(candidates) % max(self.dims.wording_codes, 1)
        return codes.repeat(clips)

    def candidate_kv(self, audio: torch.Tensor, candidates: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys and values of each clip, repeated for its ``candidates`` rows."""
        return [
            (key.repeat_interleave(candidates, dim=0), value.repeat_interleave(candidates, dim=0))
            for key, value in self.cross_attention_kv(audio)
        ]

    def step(
        self,
        noisy: torch.Tensor,
        t: torch.Tensor,
        self_cond: torch.Tensor,
        code: torch.Tensor,
        audio_kv: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sampler step in eager PyTorch: logits and the x0 estimate (their expected embedding)."""
        logits = self(noisy, t, self_cond, audio_kv=audio_kv, code=code)
        return logits, self.expected_embedding(logits)
