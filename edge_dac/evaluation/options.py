"""What ``edge-dac eval`` can be told (its flags, in evaluation/cli.py), checked once."""

from __future__ import annotations

from dataclasses import dataclass

from edge_dac.errors import EdgeDacError
from edge_dac.model.decoding import DecodingOptions

SWEEP_STEPS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class EvalOptions:
    """Everything ``edge-dac eval`` can be told. The decoding defaults (steps, candidates) are
    ``DecodingOptions``'s, the ones the daemon (configs/daemon.yaml ``engine``) and ``caption`` use."""

    steps: int = DecodingOptions.steps
    candidates: int = DecodingOptions.candidates
    repair: bool = DecodingOptions.repair  # False: score the decoder's raw captions (no whole-prefix repair)
    match_events: bool = DecodingOptions.match_events  # False: rank without the event head
    event_guidance: float = DecodingOptions.event_guidance  # 0: the event head does not steer the words
    beam: int = 1  # AR only: 1 = greedy (a beam of K is used when K > 1)
    seed: int = 0
    batch_size: int = 32
    limit: int | None = None  # first N clips of the (split of the) manifest
    split: str | None = None  # only clips of this split; None = all
    audio_root: str | None = None
    skip_bad: bool = False
    backend: str = "eager"
    precision: str | None = None  # the backend's own default (fp32) when None
    sbert: bool = True
    meteor: bool = True
    speed: bool = True
    speed_seconds: float = 2.0  # timed per speed setting (at least two calls each)
    speed_batch_sizes: tuple[int, ...] = (1, 32)
    sweep: bool | None = None  # None: on for DAC, off for AR (it has no denoising steps)
    sweep_steps: tuple[int, ...] = SWEEP_STEPS
    sweep_clips: int = 50
    report_samples: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "candidates", "beam", "batch_size", "sweep_clips"):
            if getattr(self, name) < 1:
                raise EdgeDacError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise EdgeDacError(f"--limit must be at least 1, got {self.limit}")
        if self.event_guidance < 0:
            raise EdgeDacError(f"--event-guidance must be 0 or more, got {self.event_guidance}")
        if self.speed_seconds <= 0:
            raise EdgeDacError(f"--speed-seconds must be positive, got {self.speed_seconds:g}")
        if not self.sweep_steps or min(self.sweep_steps) < 1:
            raise EdgeDacError(f"sweep steps must be positive integers, got {self.sweep_steps}")
