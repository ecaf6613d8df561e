"""Audio sources: a file or the bundled demo scenes, paced like a live microphone.

Every source hands out ``AudioBlock``s of mono float32 at the model's rate, numbered on its own sample
clock, and exposes the state the status heartbeat reports (``healthy``, ``finished``, and for the
microphone ``waiting``/``recovering``/``failed``; see ``mic.py``). A file source paced at real
time behaves like a microphone, so the whole daemon can be run and tested without one; ``fast``
reads as quickly as the pipeline takes the audio.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_dac.audio import SAMPLE_RATE, load_audio
from edge_dac.const import DEMO_DIR
from edge_dac.daemon.config import SourceConfig
from edge_dac.daemon.windows import AudioBlock
from edge_dac.errors import AudioError

SOURCE_STATES = ("waiting", "healthy", "recovering", "failed", "finished")


class AudioSource(Protocol):
    kind: str
    name: str
    sample_rate: int
    state: str  # one of SOURCE_STATES
    overflows: int  # capture overruns (audio lost before we could copy it)
    reopens: int  # times the device was reopened after a loss
    anchor_time: float | None  # unix time of sample 0, known once the first sample arrived
    realtime: bool  # paced by a clock (drop windows under overload) or by the reader (wait instead)

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> AudioBlock | None:
        """The next block, or None if none arrived within ``timeout_s`` (or the source finished)."""

    def stop(self) -> None: ...


class FileSource:
    """One or more audio files played in order, at real time (default) or as fast as read."""

    def __init__(
        self,
        paths: list[Path],
        *,
        kind: str = "file",
        loop: bool = False,
        fast: bool = False,
        block_s: float = 0.1,
        sample_rate: int = SAMPLE_RATE,
        pace_hz: float | None = None,
    ):
        if not paths:
            raise AudioError("no audio files to read; pass --source file:PATH")
        self.kind, self.sample_rate, self.loop, self.realtime = kind, sample_rate, loop, not fast
        # Samples per wall second at real time: the sample rate, unless imitating a device whose clock is off.
        self.pace_hz = float(pace_hz or sample_rate)
        self.name = paths[0].name if len(paths) == 1 else f"{paths[0].parent.name}/ ({len(paths)} files)"
        # Whole files in memory: sources are scenes and recordings of minutes, not days (10 min = 38 MB).
        self._audio = np.concatenate([load_audio(path, sample_rate) for path in paths])
        self._block = max(1, round(block_s * sample_rate))
        self._position = 0  # next sample to hand out, on the stream's clock (grows past the file when looping)
        self._started_at = 0.0
        self.state = "waiting"
        self.overflows = self.reopens = 0
        self.anchor_time: float | None = None

    def start(self) -> None:
        self._started_at = time.monotonic()
        self.anchor_time = time.time()
        self.state = "healthy"

    def read(self, timeout_s: float) -> AudioBlock | None:
        if self.state != "healthy":
            return None
        offset = self._position % len(self._audio) if self.loop else self._position
        if offset >= len(self._audio):
            self.state = "finished"
            return None
        count = min(self._block, len(self._audio) - offset)
        if self.realtime:  # hand out a block only once its last sample "has been recorded"
            due = self._started_at + (self._position + count) / self.pace_hz
            wait = due - time.monotonic()
            if wait > timeout_s:
                time.sleep(timeout_s)
                return None
            if wait > 0:
                time.sleep(wait)
        block = AudioBlock(self._audio[offset : offset + count], self._position)
        self._position += count
        return block

    def stop(self) -> None:
        if self.state == "healthy":
            self.state = "finished"


def demo_paths(folder: str | Path | None = None) -> list[Path]:
    folder = Path(folder) if folder else DEMO_DIR
    paths = sorted(folder.glob("*.flac"))
    if not paths:
        raise AudioError(f"{folder}: no demo clips (*.flac); reinstall edge-dac or use --source file:PATH")
    return paths


def open_source(config: SourceConfig, sample_rate: int = SAMPLE_RATE) -> AudioSource:
    """The source the config describes (not started yet)."""
    if config.kind == "mic":
        from edge_dac.daemon.mic import MicSource  # imports sounddevice, which needs PortAudio

        return MicSource(config, sample_rate)
    if config.kind == "demo":
        return FileSource(
            demo_paths(config.path), kind="demo", loop=True, fast=config.fast, block_s=config.block_s,
            sample_rate=sample_rate, pace_hz=config.pace_hz,
        )
    return FileSource(
        [Path(config.path)], loop=config.loop, fast=config.fast, block_s=config.block_s, sample_rate=sample_rate,
        pace_hz=config.pace_hz,
    )
