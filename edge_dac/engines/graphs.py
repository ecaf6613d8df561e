"""The two graphs every compiled backend runs: audio -> cross-attention keys/values, and one denoiser step.

``edge_dac.model.graphs`` exports the model as it is written: the denoiser step takes the audio
context and projects it to keys and values in every layer, at every step, for every candidate.
Those projections were half of the sampler's arithmetic for the shipped dims (250 frames against 24
caption positions), yet they depend on the window alone. Here the audio graph ends with them, once
per window, and the step graph reads them (``Attention(context_kv=...)``), which makes every
compiled backend about twice as fast as exporting the model's own graphs. The eager backend keeps
the model's own code path: it is the reference the others are checked against (same captions).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from edge_dac.model.captioner import Captioner
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.graphs import AudioGraph
from edge_dac.model.layers import timestep_features

# Bump when what these graphs compute changes: it is part of every engine's cache key.
GRAPH_VERSION = 1
# The step graph runs windows x candidates rows; engines with a fixed batch range (TensorRT) are
# built for up to this many candidates per window and split larger requests.
MAX_CANDIDATES = 8

AUDIO_INPUTS = ("audio",)
AUDIO_OUTPUTS = ("keys", "values")
STEP_INPUTS = ("noisy", "t", "self_cond", "keys", "values")
STEP_OUTPUTS = ("logits", "x0")


class ContextGraph(nn.Module):
    """(batch, samples) waveform -> keys, values: (batch, layers, heads, frames, head_width) each."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        if not isinstance(captioner.decoder, DiffusionDecoder):
            raise TypeError("compiled engines exist for DAC models only")
        self.audio = AudioGraph(captioner)
        self.blocks = captioner.decoder.blocks

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.audio(audio)
        pairs = [block.cross_attn.project_context(context) for block in self.blocks]
        return torch.stack([key for key, _ in pairs], dim=1), torch.stack([value for _, value in pairs], dim=1)


class CachedStepGraph(nn.Module):
    """``DiffusionDecoder.forward`` + x0 estimate, reading the precomputed cross-attention keys/values."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        if not isinstance(captioner.decoder, DiffusionDecoder):
            raise TypeError("compiled engines exist for DAC models only")
        self.decoder = captioner.decoder

    def forward(
        self, noisy: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.decoder
        # Same lines as DiffusionDecoder.forward, with context_kv in place of the audio context.
        x = decoder.input_proj(torch.cat([noisy, self_cond], dim=-1))
        time = decoder.time_mlp(timestep_features(t, x.shape[-1]))
        x = x + decoder.positions[: x.shape[1]] + time[:, None, :]
        for layer, block in enumerate(decoder.blocks):
            x = block(x, context_kv=(keys[:, layer], values[:, layer]))
        logits = decoder.lm_head(decoder.norm(x))
        return logits, decoder.expected_embedding(logits)


def example_inputs(captioner: Captioner, batch: int = 2) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of the right shapes for tracing both graphs, all distinct tensors.

    Distinct matters: handed the same tensor twice (say noisy and self_cond), the exporters merge
    the two inputs into one, and the exported step silently ignores its self-conditioning input.
    """
    dims, device = captioner.dims, captioner.device
    generator = torch.Generator().manual_seed(0)
    audio = (torch.randn(batch, dims.max_audio_samples, generator=generator) * 0.1).to(device)
    with torch.no_grad():
        keys, values = ContextGraph(captioner).eval()(audio)
    shape = (batch, dims.max_caption_tokens, dims.embedding_dim)
    noisy = torch.randn(shape, generator=generator).to(device)
    self_cond = torch.randn(shape, generator=generator).to(device)
    t = torch.full((batch,), 0.5, device=device)
    return {"audio": (audio,), "step": (noisy, t, self_cond, keys, values)}


def export_programs(captioner: Captioner, max_windows: int = 1024) -> dict[str, ExportedProgram]:
    """``torch.export`` programs of both graphs: audio batch in [1, max_windows], step rows up to x MAX_CANDIDATES."""
    captioner.eval()
    inputs = example_inputs(captioner)
    windows = Dim("windows", min=1, max=max_windows)
    rows = Dim("rows", min=1, max=max_windows * MAX_CANDIDATES)
    with torch.no_grad():
        audio = torch.export.export(ContextGraph(captioner).eval(), inputs["audio"], dynamic_shapes=({0: windows},))
        step = torch.export.export(
            CachedStepGraph(captioner).eval(), inputs["step"], dynamic_shapes=tuple({0: rows} for _ in STEP_INPUTS)
        )
    return {"audio": audio, "step": step}
