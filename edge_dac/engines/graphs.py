"""The two graphs every compiled backend runs, built from the model's own modules.

Inference is two graphs: the audio side (front end, encoder, every decoder layer's
cross-attention keys and values, and for a model with an event head its clip probabilities, which
ranking reads) runs once per window; the denoiser step runs ``steps`` times per
window and reads those keys and values (``DiffusionDecoder.forward(audio_kv=...)``). The keys and
values depend on the window alone, and projecting them inside the step was half of the sampler's
arithmetic for the shipped dims (250 frames against 24 caption positions). The step graph calls
``DiffusionDecoder.forward`` itself, so the eager sampler and every compiled backend compute the
same function by construction (the parity test checks the captions, not a copy of the code).

A streaming encoder (``ModelDims.encoder_chunk_seconds``) also has its audio side as two graphs, the
chunk graph (one chunk of audio -> its features, run once per chunk and kept by
``edge_dac.model.decoding.ChunkCache``) and the mix graph (a window's chunk features -> keys and
values); backends without them run the whole-window graph, which computes the same function.

A model whose event head hears with YAMNet (``ModelDims.event_features == "yamnet"``) runs YAMNet in
a graph of its own, the hearing graph (one second of audio -> its patch embedding), kept by a
``ChunkCache`` as well: YAMNet's patches are independent, so a window sliding by whole seconds shares
all but its newest seconds' embeddings with the previous window (8 of 10 at the daemon's 2 s hop),
and the audio graph reads them as its second input, ``heard``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from edge_dac.model.captioner import Captioner
from edge_dac.model.decoding import ChunkCache
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.dims import ModelDims
from edge_dac.model.encoder import EventHead
from edge_dac.model.hearing import HEARING_CHUNK_SAMPLES

# Bump when what these graphs compute changes: it is part of every engine's cache key.
GRAPH_VERSION = 6
# The step graph runs windows x candidates rows; engines with a fixed batch range (TensorRT) are
# built for up to this many candidates per window and split larger requests.
MAX_CANDIDATES = 8

AUDIO_INPUTS = ("audio",)
HEARD_INPUT = "heard"  # the audio graph's second input for a model whose event head hears with YAMNet
HEARING_INPUTS, HEARING_OUTPUTS = ("seconds",), ("heard_seconds",)
AUDIO_OUTPUTS = ("keys", "values")
EVENTS_OUTPUT = "events"  # the audio and mix graphs' third output, for a model with an event head
CHUNK_INPUTS, CHUNK_OUTPUTS = ("chunk",), ("chunk_features",)
MIX_INPUTS = ("features",)
STEP_OUTPUTS = ("logits", "x0")


def step_inputs(dims: ModelDims) -> tuple[str, ...]:
    """The step graph's inputs; ``code`` (each row's wording code) only for a model with codes, since
    exporters drop an input the graph never reads."""
    names = ("noisy", "t", "self_cond", "keys", "values")
    return (*names, "code") if dims.wording_codes else names


def audio_inputs(dims: ModelDims) -> tuple[str, ...]:
    """The audio graph's inputs: the window, then YAMNet's embeddings of its seconds where the head hears with them."""
    return (*AUDIO_INPUTS, HEARD_INPUT) if dims.hears_with_yamnet else AUDIO_INPUTS


def audio_outputs(dims: ModelDims) -> tuple[str, ...]:
    """The audio (or mix) graph's outputs: keys and values, then the clip event probabilities
    (windows, classes) where the model has an event head."""
    return (*AUDIO_OUTPUTS, EVENTS_OUTPUT) if dims.event_classes else AUDIO_OUTPUTS


def _dac_decoder(captioner: Captioner) -> DiffusionDecoder:
    if not isinstance(captioner.decoder, DiffusionDecoder):
        raise TypeError("compiled engines exist for DAC models only")
    return captioner.decoder


class ContextGraph(nn.Module):
    """(batch, samples) waveform -> keys, values: (batch, layers, heads, frames, head_width) each;
    then the clip event probabilities (batch, classes) for a model with an event head. A head that
    hears with YAMNet reads ``heard``, (batch, seconds, 1024) from the hearing graph."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.frontend, self.encoder, self.decoder = captioner.frontend, captioner.encoder, _dac_decoder(captioner)
        self.events = captioner.events

    def forward(self, audio: torch.Tensor, heard: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        features = self.encoder(self.frontend(audio))
        return _audio_side(self.decoder, self.events, features, features if heard is None else heard)


class HearingGraph(nn.Module):
    """YAMNet on whole seconds of audio: (seconds, 16000) -> (seconds, 1, 1024), one patch each."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        if captioner.hearing is None:
            raise TypeError("this model's event head does not hear with YAMNet")
        self.hearing = captioner.hearing

    def forward(self, seconds: torch.Tensor) -> torch.Tensor:
        return self.hearing(seconds)


def _audio_side(
    decoder: DiffusionDecoder, events: EventHead | None, features: torch.Tensor, heard: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Keys and values from the encoder features; clip event probabilities from what the event
    head reads (``heard``: the same features, or YAMNet's embeddings)."""
    frames = torch.sigmoid(events(heard).float()) if events is not None else None
    # An event-memory denoiser reads the frames too (prepare_audio ignores them otherwise).
    memory = frames.to(features.dtype) if frames is not None and decoder.event_proj is not None else None
    pairs = decoder.cross_attention_kv(decoder.prepare_audio(features, memory))
    keys, values = torch.stack([key for key, _ in pairs], dim=1), torch.stack([value for _, value in pairs], dim=1)
    if frames is None:
        return keys, values
    return keys, values, EventHead.pool(frames)


class ChunkGraph(nn.Module):
    """A streaming encoder's chunk: (batch, chunk samples) -> (batch, chunk frames, encoder_width)."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.frontend, self.encoder = captioner.frontend, captioner.encoder

    def forward(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode_chunk(self.frontend(chunk))


class MixGraph(nn.Module):
    """A window's chunk features, joined, -> keys, values (and clip event probabilities), as ``ContextGraph``."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.encoder, self.decoder, self.events = captioner.encoder, _dac_decoder(captioner), captioner.events

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.encoder.mix(features)
        return _audio_side(self.decoder, self.events, features, features)  # a streaming model: encoder head


class StepGraph(nn.Module):
    """One denoiser evaluation, ``DiffusionDecoder.step`` on stacked keys/values: -> (logits, x0)."""

    def __init__(self, captioner: Captioner):
        super().__init__()
        self.decoder = _dac_decoder(captioner)

    def forward(
        self,
        noisy: torch.Tensor,
        t: torch.Tensor,
        self_cond: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        code: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        audio_kv = [(keys[:, layer], values[:, layer]) for layer in range(keys.shape[1])]
        return self.decoder.step(noisy, t, self_cond, code, audio_kv)


def step_arguments(dims: ModelDims, noisy, t, self_cond, code, keys, values) -> tuple:
    """The step graph's positional arguments, in ``step_inputs(dims)`` order."""
    arguments = (noisy, t, self_cond, keys, values)
    return (*arguments, code) if dims.wording_codes else arguments


def example_inputs(captioner: Captioner, batch: int = 2) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of the right shapes for tracing both graphs, all distinct tensors.

    Distinct matters: handed the same tensor twice (say noisy and self_cond), the exporters merge
    the two inputs into one, and the exported step silently ignores its self-conditioning input.
    """
    dims, device = captioner.dims, captioner.device
    generator = torch.Generator().manual_seed(0)
    audio = (torch.randn(batch, dims.max_audio_samples, generator=generator) * 0.1).to(device)
    with torch.no_grad():
        heard = None
        if captioner.hearing is not None:  # YAMNet's embeddings of the windows' seconds, joined as runners join them
            heard = ChunkCache(HEARING_CHUNK_SAMPLES, HearingGraph(captioner)).features(audio)
        audio_arguments = (audio,) if heard is None else (audio, heard.contiguous())
        keys, values = ContextGraph(captioner).eval()(*audio_arguments)[:2]
    shape = (batch, dims.max_caption_tokens, dims.embedding_dim)
    noisy = torch.randn(shape, generator=generator).to(device)
    self_cond = torch.randn(shape, generator=generator).to(device)
    t = torch.full((batch,), 0.5, device=device)
    code = (torch.arange(batch) % max(dims.wording_codes, 1)).to(device)
    inputs = {"audio": audio_arguments, "step": step_arguments(dims, noisy, t, self_cond, code, keys, values)}
    if heard is not None:
        inputs["hearing"] = ((torch.randn(batch, HEARING_CHUNK_SAMPLES, generator=generator) * 0.1).to(device),)
    if dims.encoder_chunk_samples:
        chunk = (torch.randn(batch, dims.encoder_chunk_samples, generator=generator) * 0.1).to(device)
        with torch.no_grad():
            features = ChunkGraph(captioner).eval()(audio.reshape(-1, dims.encoder_chunk_samples))
        inputs["chunk"] = (chunk,)
        inputs["mix"] = (features.unflatten(0, (batch, -1)).flatten(1, 2).contiguous(),)
    return inputs


def export_programs(captioner: Captioner, max_windows: int = 1024) -> dict[str, ExportedProgram]:
    """``torch.export`` programs of both graphs (and a streaming encoder's chunk and mix graphs): audio
    batch in [1, max_windows], step rows up to x MAX_CANDIDATES, chunks up to x a window's chunks."""
    captioner.eval()
    inputs = example_inputs(captioner)
    windows = Dim("windows", min=1, max=max_windows)
    rows = Dim("rows", min=1, max=max_windows * MAX_CANDIDATES)
    with torch.no_grad():
        audio = torch.export.export(
            ContextGraph(captioner).eval(), inputs["audio"], dynamic_shapes=tuple({0: windows} for _ in inputs["audio"])
        )
        step = torch.export.export(
            StepGraph(captioner).eval(),
            inputs["step"],
            dynamic_shapes=tuple({0: rows} for _ in step_inputs(captioner.dims)),
        )
        programs = {"audio": audio, "step": step}
        if "hearing" in inputs:
            seconds = Dim("seconds", min=1, max=max_windows * captioner.dims.max_audio_samples // HEARING_CHUNK_SAMPLES)
            programs["hearing"] = torch.export.export(
                HearingGraph(captioner).eval(), inputs["hearing"], dynamic_shapes=({0: seconds},)
            )
        if captioner.dims.encoder_chunk_samples:
            per_window = captioner.dims.max_audio_samples // captioner.dims.encoder_chunk_samples
            chunks = Dim("chunks", min=1, max=max_windows * per_window)
            programs["chunk"] = torch.export.export(
                ChunkGraph(captioner).eval(), inputs["chunk"], dynamic_shapes=({0: chunks},)
            )
            programs["mix"] = torch.export.export(
                MixGraph(captioner).eval(), inputs["mix"], dynamic_shapes=({0: windows},)
            )
    return programs
