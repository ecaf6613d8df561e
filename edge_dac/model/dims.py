"""Model dimensions: a frozen dataclass saved inside every checkpoint (``config.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from edge_dac.errors import CheckpointError

DecoderKind = Literal["dac", "ar"]


@dataclass(frozen=True)
class ModelDims:
    """Everything needed to rebuild a captioner's modules (weights come from the checkpoint)."""

    kind: DecoderKind = "dac"
    vocab_size: int = 1000

    # audio front end: 16 kHz mono -> log-mel, 25 ms window, 10 ms hop
    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    max_audio_seconds: float = 10.0

    # audio encoder: conv stem (time stride) + transformer. "conv1d" treats the mel bins as channels
    # (Whisper's stem); "cnn2d" convolves over time and frequency first, which learns sound events
    # from little data far better (PANNs-style), at more compute per second of audio.
    encoder_stem: Literal["conv1d", "cnn2d"] = "conv1d"
    encoder_channels: int = 32  # cnn2d: channels of the first block, doubled per block
    encoder_width: int = 192
    encoder_layers: int = 4
    encoder_heads: int = 4
    encoder_stride: int = 4
    # streaming: 0 = the encoder hears the whole window at once. > 0: the front end, the stem and
    # the first ``encoder_chunk_layers`` transformer blocks hear one chunk of this many seconds at
    # a time and the other blocks the whole window, so that a sliding window whose hop is a
    # multiple of the chunk shares all but its newest chunk's work with the previous window.
    encoder_chunk_seconds: float = 0.0
    encoder_chunk_layers: int = 0

    # caption decoder (shared by both kinds)
    decoder_width: int = 192
    decoder_layers: int = 4
    decoder_heads: int = 4
    max_caption_tokens: int = 24
    dropout: float = 0.1

    # diffusion (kind == "dac" only)
    embedding_dim: int = 64
    schedule: Literal["sqrt", "cosine"] = "sqrt"
    embedding_scale: float = 1.0
    # wording codes (kind == "dac"): the denoiser is told which caption wording (template family)
    # to write, so it does not average several wordings into function words; each of K candidates
    # gets its own code. 0 = off (a checkpoint from before the codes).
    wording_codes: int = 0

    # sound event detection head (both kinds): frame-level class logits, trained from the mixer's
    # event times; the class names are part of the checkpoint. Its input: "encoder", the encoder's
    # frames; "yamnet", frozen YAMNet embeddings of 0.96 s patches every second (model/hearing.py),
    # which hear unseen recordings in mixtures far better than an encoder trained on ours.
    event_classes: tuple[str, ...] = ()
    event_features: Literal["encoder", "yamnet"] = "encoder"
    # 0: the head is one linear layer per frame; > 0: a hidden layer of this width first (GELU), which
    # reads YAMNet's embeddings better (val event-F1 0.496 against 0.477, docs/dac-recipe.md stage 10).
    event_hidden: int = 0
    # DAC only: the denoiser also cross-attends to the event head's frame probabilities (one memory
    # token per second, beside the encoder's frames), so it reads what the head hears instead of
    # only being steered by it (docs/dac-recipe.md, stage 11). Needs a YAMNet head.
    event_memory: bool = False

    def __post_init__(self) -> None:
        # config.json holds a list; a frozen dataclass must hold something hashable.
        object.__setattr__(self, "event_classes", tuple(self.event_classes))

    @property
    def max_audio_samples(self) -> int:
        return int(round(self.max_audio_seconds * self.sample_rate))

    @property
    def max_mel_frames(self) -> int:
        return self.max_audio_samples // self.hop_length

    @property
    def max_encoder_frames(self) -> int:
        return -(-self.max_mel_frames // self.encoder_stride)

    @property
    def event_frames(self) -> int:
        """The event head's frames per window: one per second on YAMNet, else one per encoder frame."""
        return int(self.max_audio_seconds) if self.event_features == "yamnet" else self.max_encoder_frames

    @property
    def hears_with_yamnet(self) -> bool:
        """Whether the event head reads YAMNet's embeddings of the waveform (then engines run YAMNet too)."""
        return bool(self.event_classes) and self.event_features == "yamnet"

    @property
    def encoder_chunk_samples(self) -> int:
        """Samples per encoder chunk; 0 for a whole-window encoder."""
        return int(round(self.encoder_chunk_seconds * self.sample_rate))

    @property
    def encoder_frame_seconds(self) -> float:
        """Seconds of audio per encoder output frame (the event head's time resolution)."""
        return self.encoder_stride * self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-shaped (lists, not tuples), so that a dict read back from config.json compares equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelDims:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(
                f"{source}: unknown model dimension(s) {', '.join(unknown)} "
                f"(this edge-dac knows: {', '.join(sorted(known))}); upgrade edge-dac or fix the file"
            )
        try:
            dims = cls(**data)
        except TypeError as error:
            raise CheckpointError(f"{source}: bad model dimensions ({error})") from None
        dims.validate(source)
        return dims

    def validate(self, source: str = "config") -> None:
        problems = []
        if self.kind not in ("dac", "ar"):
            problems.append(f"kind must be 'dac' or 'ar', got {self.kind!r}")
        if self.schedule not in ("sqrt", "cosine"):
            problems.append(f"schedule must be 'sqrt' or 'cosine', got {self.schedule!r}")
        if self.encoder_stem not in ("conv1d", "cnn2d"):
            problems.append(f"encoder_stem must be 'conv1d' or 'cnn2d', got {self.encoder_stem!r}")
        if self.encoder_stem == "cnn2d" and self.n_mels % 8:
            problems.append(f"encoder_stem cnn2d needs n_mels divisible by 8, got {self.n_mels}")
        if self.encoder_stride not in (1, 2, 4, 8):
            problems.append(f"encoder_stride must be 1, 2, 4 or 8, got {self.encoder_stride}")
        if self.encoder_width % self.encoder_heads or self.decoder_width % self.decoder_heads:
            problems.append("widths must be divisible by their numbers of heads")
        chunk, frame = self.encoder_chunk_samples, self.hop_length * self.encoder_stride
        if self.encoder_chunk_seconds < 0 or (chunk and (self.max_audio_samples % chunk or chunk % frame)):
            problems.append(
                f"encoder_chunk_seconds must divide the {self.max_audio_seconds} s window into whole encoder frames, "
                f"got {self.encoder_chunk_seconds}"
            )
        if not 0 <= self.encoder_chunk_layers <= self.encoder_layers or (self.encoder_chunk_layers and not chunk):
            problems.append(
                f"encoder_chunk_layers must be 0-{self.encoder_layers} and needs encoder_chunk_seconds, "
                f"got {self.encoder_chunk_layers}"
            )
        if self.event_hidden < 0:
            problems.append(f"event_hidden must be >= 0, got {self.event_hidden}")
        if self.wording_codes < 0:
            problems.append(f"wording_codes must be >= 0, got {self.wording_codes}")
        if self.event_features not in ("encoder", "yamnet"):
            problems.append(f"event_features must be 'encoder' or 'yamnet', got {self.event_features!r}")
        if self.event_features == "yamnet" and (self.sample_rate != 16_000 or self.encoder_chunk_seconds):
            problems.append("event_features 'yamnet' needs 16 kHz audio and a whole-window encoder")
        if self.event_memory and (self.kind != "dac" or not self.event_classes or self.event_features != "yamnet"):
            problems.append("event_memory needs kind 'dac' and an event head on YAMNet (event_features 'yamnet')")
        if len(set(self.event_classes)) != len(self.event_classes):
            problems.append("event_classes must be distinct")
        if self.vocab_size < 8:
            problems.append(f"vocab_size must be at least 8, got {self.vocab_size}")
        if problems:
            raise CheckpointError(f"{source}: {'; '.join(problems)}")
