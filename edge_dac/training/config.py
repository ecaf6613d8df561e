"""The training config (``configs/train-*.yaml``): one strict pydantic model, loaded with
``edge_dac.config.load_config`` so that a bad key is one line naming the file and the key.

Batch sizes: ``batch_size`` is the *global* batch of one optimiser step; it is cut into
``batch_size / micro_batch_size`` shards that are spread over the processes (DDP ranks) and, within
a process, over gradient-accumulation micro-steps. The same config therefore trains the same
model on one process or on several: only the wall time changes.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Literal

from pydantic import Field, create_model, field_validator, model_validator

from edge_dac.config import StrictModel, load_config
from edge_dac.data.captions import FAMILIES
from edge_dac.data.mixer import SceneConfig
from edge_dac.model.dims import ModelDims

# ModelDims fields that the config does not set: the decoder kind is top-level, the vocabulary size
# comes from the tokenizer.
_NOT_IN_MODEL_SECTION = ("kind", "vocab_size", "event_classes")


def _model_section() -> type[StrictModel]:
    """A config section with exactly the fields of ModelDims (defaults included), built from the
    dataclass so the two never drift apart, plus where to take the encoder weights from."""
    hints = typing.get_type_hints(ModelDims)
    fields = {
        f.name: (hints[f.name], f.default) for f in dataclasses.fields(ModelDims) if f.name not in _NOT_IN_MODEL_SECTION
    }
    fields["encoder_init"] = (
        str | None,
        Field(None, description="a tagger run or captioner checkpoint whose audio encoder starts the model"),
    )
    return create_model("ModelSection", __base__=StrictModel, **fields)


ModelSection = _model_section()


class TokenizerSection(StrictModel):
    vocab_size: int = Field(1000, ge=16, description="at most this many WordPiece tokens")
    scenes: int = Field(2000, ge=1, description="mixer: captions of this many sampled train scenes")


class DataSection(StrictModel):
    # Either the on-the-fly scene mixer (the default) ...
    packages: list[str] | None = Field(None, description="mixer: only these packages; default every fetched one")
    catalog: str | None = Field(None, description="mixer: catalog.csv; default $EDGE_DAC_CATALOG or ../shared")
    cache_dir: str | None = Field(None, description="mixer: fetch cache; default $EDGE_DAC_CACHE or ~/.cache/edge-dac")
    scene: SceneConfig = Field(default_factory=SceneConfig)
    scene_pool: int | None = Field(
        None,
        ge=1,
        description="mixer: draw scenes from this many fixed seeds (epochs); null = a fresh scene every time",
    )
    preload: bool = Field(False, description="mixer: decode every source up front (worth it for long runs)")
    caption_families: list[str] | None = Field(
        None,
        description="mixer: train only on captions of these template families (narrative, gerund, setting_first, "
        "anchored, listing); null = all five. One wording per scene makes the target less multimodal for DAC",
    )

    @field_validator("caption_families")
    @classmethod
    def _known_families(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown caption families {unknown} (allowed: {', '.join(FAMILIES)})")
        return value

    # ... or a captioned dataset on disk.
    manifest: str | None = Field(None, description="train on this manifest (edge_dac.data.datasets formats)")
    val_manifest: str | None = Field(None, description="validate on this manifest (default: its 'val' items)")
    audio_root: str | None = None
    workers: int = Field(0, ge=0, description="DataLoader worker processes per rank (0: mix in the main process)")


class AugmentSection(StrictModel):
    """Source augmentation (mixer only, applied to each source before it is placed) and feature
    masking (log-mel, training only; export graphs never see it)."""

    source_prob: float = Field(0.5, ge=0.0, le=1.0, description="chance that a source is augmented at all")
    gain_db: float = Field(3.0, ge=0.0, description="random source gain in +-dB (small: captions name distance)")
    speed: tuple[float, float] = Field((0.9, 1.1), description="resampling factor: pitch and tempo together")
    eq_db: float = Field(6.0, ge=0.0, description="random smooth EQ curve within +-dB")
    reverb_prob: float = Field(0.3, ge=0.0, le=1.0)
    reverb_seconds: tuple[float, float] = Field((0.2, 0.8), description="RT60 range of the synthetic room")
    time_masks: int = Field(2, ge=0)
    time_mask_frames: int = Field(30, ge=0, description="longest time mask, in log-mel frames (10 ms)")
    freq_masks: int = Field(2, ge=0)
    freq_mask_bins: int = Field(8, ge=0)


class OptimSection(StrictModel):
    steps: int = Field(5000, ge=1)
    batch_size: int = Field(32, ge=1, description="global batch of one optimiser step")
    micro_batch_size: int | None = Field(
        None, ge=1, description="clips per forward pass; default batch_size / processes (no accumulation)"
    )
    learning_rate: float = Field(1e-3, gt=0.0)
    min_learning_rate: float = Field(1e-4, ge=0.0, description="end of the cosine decay")
    warmup_steps: int = Field(200, ge=0)
    weight_decay: float = Field(0.01, ge=0.0)
    grad_clip: float = Field(1.0, ge=0.0, description="max global gradient norm; 0 = off")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="EMA of the weights; 0 = off")


class LossSection(StrictModel):
    """DAC denoising loss options (see edge_dac/model/diffusion.py; the AR loss has none) and the
    auxiliary tagging loss (both kinds)."""

    self_cond_prob: float = Field(0.5, ge=0.0, le=1.0)
    unroll_prob: float = Field(0.5, ge=0.0, le=1.0)
    mse_weight: float = Field(1.0, ge=0.0)
    tag_weight: float = Field(
        0.0,
        ge=0.0,
        description="weight of the clip-level event-tagging loss (both kinds; 0: off): binary cross-entropy "
        "of the event head's pooled clip probabilities, summed over classes and averaged over clips. The "
        "caption loss alone teaches the encoder slowly which events it hears; tagging gives it a direct signal.",
    )
    sed_weight: float = Field(
        0.0,
        ge=0.0,
        description="weight of the frame-level sound-event-detection loss (both kinds; 0: off): binary "
        "cross-entropy of the event head's frame logits against the mixer's event times, summed over classes "
        "and averaged over frames and clips. Either weight > 0 gives the model an event head (kept in the "
        "checkpoint, so finetuning continues it).",
    )

    @property
    def event_head(self) -> bool:
        return self.tag_weight > 0 or self.sed_weight > 0


class ValidationSection(StrictModel):
    every: int = Field(250, ge=1, description="validate every N steps (and at the end)")
    scenes: int = Field(64, ge=1, description="fixed val-split scenes (mixer) or val items (manifest)")
    train_probe_scenes: int = Field(32, ge=0, description="fixed train-split scenes: event-F1 on seen recordings")
    seed: int = Field(1, description="seeds of the fixed validation scenes")
    batch_size: int = Field(32, ge=1)
    decoding_steps: int = Field(6, ge=1, description="DAC sampler steps for the validation captions")
    candidates: int = Field(1, ge=1, description="DAC samples / AR beams per clip for validation captions")


class CheckpointSection(StrictModel):
    every: int = Field(500, ge=1, description="write a resumable checkpoint every N steps (and at the end)")
    keep: int = Field(2, ge=1, description="keep the newest N step checkpoints (best/ is kept apart)")
    best_metric: Literal["event_f1", "loss"] = "event_f1"


class LogSection(StrictModel):
    every: int = Field(10, ge=1)
    tensorboard: bool = True


class TrainConfig(StrictModel):
    kind: Literal["dac", "ar"] = "dac"
    stage: Literal["caption", "tagger"] = Field(
        "caption", description="tagger: pretrain the audio encoder as a multi-label event tagger"
    )
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process; default torch's choice")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    model: ModelSection = Field(default_factory=ModelSection)  # type: ignore[valid-type]
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    data: DataSection = Field(default_factory=DataSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    loss: LossSection = Field(default_factory=LossSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    log: LogSection = Field(default_factory=LogSection)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.data.manifest is None and self.data.scene.seconds > self.model.max_audio_seconds:
            # The model would hear only the start of each scene while its captions describe all of it.
            raise ValueError(
                f"data.scene.seconds ({self.data.scene.seconds:g}) must not exceed model.max_audio_seconds "
                f"({self.model.max_audio_seconds:g})"
            )
        micro = self.optim.micro_batch_size
        if micro is not None and self.optim.batch_size % micro:
            raise ValueError(f"optim.batch_size {self.optim.batch_size} must be a multiple of micro_batch_size {micro}")
        return self

    def dims(self, vocab_size: int, event_classes: tuple[str, ...] = ()) -> ModelDims:
        values = self.model.model_dump(exclude={"encoder_init"})
        classes = tuple(event_classes) if self.loss.event_head else ()
        return ModelDims(kind=self.kind, vocab_size=vocab_size, event_classes=classes, **values)

    def shards(self, world_size: int) -> int:
        """Shards of one global batch (micro-batches over all ranks); checks that the sizes divide."""
        from edge_dac.errors import ConfigError

        micro = self.optim.micro_batch_size or max(1, self.optim.batch_size // world_size)
        shards = self.optim.batch_size // micro
        if self.optim.batch_size % micro or shards % world_size:
            raise ConfigError(
                f"optim.batch_size {self.optim.batch_size} with micro_batch_size {micro} gives {shards} "
                f"micro-batches, which {world_size} processes cannot share evenly; change either"
            )
        return shards

    def micro_batch(self, world_size: int) -> int:
        return self.optim.batch_size // self.shards(world_size)


def load_train_config(path: str | Path | None) -> TrainConfig:
    """``path`` validated as a TrainConfig; None gives the defaults."""
    return load_config(path, TrainConfig) if path is not None else TrainConfig()
