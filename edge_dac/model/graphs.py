"""The captioner as exportable graphs: what ``torch.export`` (and through it TensorRT/ONNX) compiles.

Inference is two graphs: the audio side runs once per window, the denoiser step runs ``steps``
times per window. Both take a dynamic batch dimension; everything else is fixed by the dims.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from edge_dac.model.captioner import Captioner
from edge_dac.model.diffusion import DiffusionDecoder


class AudioGraph(nn.Module):
    """(batch, samples) waveform -> (batch, frames, decoder_width) context for cross-attention."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.frontend, self.encoder, self.decoder = captioner.frontend, captioner.encoder, captioner.decoder

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.decoder.audio_proj(self.encoder(self.frontend(audio)))


class DenoiserStepGraph(nn.Module):
    """One denoiser evaluation: (x_t, t, self-conditioning, context) -> (logits, x0 estimate)."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        if not isinstance(captioner.decoder, DiffusionDecoder):
            raise TypeError("the denoiser step exists for DAC models only")
        self.decoder = captioner.decoder

    def forward(
        self, noisy: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.decoder(noisy, t, self_cond, context)
        return logits, self.decoder.expected_embedding(logits)


def example_inputs(captioner: Captioner, batch: int = 2) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of the right shapes for tracing both graphs."""
    dims = captioner.dims
    device = captioner.device
    audio = torch.randn(batch, dims.max_audio_samples, device=device) * 0.1
    with torch.no_grad():
        context = AudioGraph(captioner).eval()(audio)
    latent = torch.randn(batch, dims.max_caption_tokens, dims.embedding_dim, device=device)
    t = torch.full((batch,), 0.5, device=device)
    return {"audio": (audio,), "step": (latent, t, torch.zeros_like(latent), context)}


def export_graphs(captioner: Captioner, max_batch: int = 256) -> dict[str, ExportedProgram]:
    """``torch.export`` programs of the audio graph and one denoiser step, batch in [1, max_batch]."""
    captioner.eval()
    batch = Dim("batch", min=1, max=max_batch)
    inputs = example_inputs(captioner)
    audio_program = torch.export.export(
        AudioGraph(captioner).eval(), inputs["audio"], dynamic_shapes=({0: batch},)
    )
    step_program = torch.export.export(
        DenoiserStepGraph(captioner).eval(),
        inputs["step"],
        dynamic_shapes=({0: batch}, {0: batch}, {0: batch}, {0: batch}),
    )
    return {"audio": audio_program, "step": step_program}
