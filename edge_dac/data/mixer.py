"""Scene mixer: 10-second soundscapes mixed from catalog recordings, with what was placed where.

A scene is an optional background bed (looped or cropped ambience or music), one to three
foreground events (some repeated: "barks twice"), and optionally a stretch of speech by one
speaker, at random onsets and levels. Every choice comes from ``np.random.default_rng(seed)``,
so a seed always gives the same scene. Captions are written from the placed events
(``edge_dac.data.captions``), never from a template alone.

Decoding and resampling a source is the expensive part (milliseconds); it happens once per
recording and the result is kept in an in-memory LRU (``SourceBank``; ``preload()`` fills it up
front), so ``mix()`` itself is a few vectorised numpy passes over one clip and fast enough to
feed training on the fly.

Split isolation: a mixer only ever sees the rows of one split.
"""

from __future__ import annotations

import copy
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from loguru import logger
from pydantic import Field, field_validator, model_validator

from edge_dac.config import StrictModel
from edge_dac.data.captions import PlacedEvent, family_order, write_family_captions
from edge_dac.data.catalog import CatalogRow, read_recording
from edge_dac.errors import AudioError, EdgeDacError
from edge_dac.lexicon import Lexicon, load_lexicon

SPLITS = ("train", "val", "test")
_SILENCE_DB = -45.0  # below the source's peak: treated as silence when trimming
_FADE_S = 0.02


class SceneConfig(StrictModel):
    """How scenes are put together (the ``scene`` section of configs/corpus.yaml)."""

    seconds: float = Field(10.0, gt=0.5, le=60.0)
    sample_rate: int = Field(16000, ge=8000, le=48000)
    event_counts: dict[int, float] = Field(
        default_factory=lambda: {1: 0.35, 2: 0.4, 3: 0.25},
        description="probability of 1, 2, 3 ... foreground events",
    )
    background_prob: float = Field(0.6, ge=0.0, le=1.0)
    speech_prob: float = Field(0.3, ge=0.0, le=1.0)
    max_events: int = Field(4, ge=1, description="cap on all events of a scene: background + foreground + speech")
    repeat_prob: float = Field(0.3, ge=0.0, le=1.0, description="chance that a short event is repeated")
    repeat_max: int = Field(4, ge=2)
    repeat_max_seconds: float = Field(2.0, gt=0.0, description="only events shorter than this are repeated")
    max_event_seconds: float = Field(5.0, gt=0.2, description="longer foreground sources are cropped")
    speech_utterances: tuple[int, int] = (1, 4)
    max_speech_seconds: float = Field(6.0, gt=0.5)
    snr_db: tuple[float, float] = (3.0, 20.0)
    distant_prob: float = Field(0.15, ge=0.0, le=1.0)
    distant_db: tuple[float, float] = (-20.0, -12.0)
    jitter_db: float = Field(3.0, ge=0.0, description="random level spread of foreground events")
    level_db: tuple[float, float] = (-28.0, -18.0)
    peak: float = Field(0.98, gt=0.0, le=1.0)
    max_source_seconds: float = Field(30.0, gt=1.0, description="decode at most this much of a long recording")
    cache_mb: int = Field(1024, ge=16, description="in-memory cache of decoded sources, per process")
    exclude_notes: list[str] = Field(default_factory=lambda: ["not natural speech"])

    @field_validator("event_counts")
    @classmethod
    def _counts(cls, value: dict[int, float]) -> dict[int, float]:
        if not value or min(value) < 1 or any(p < 0 for p in value.values()) or sum(value.values()) <= 0:
            raise ValueError("needs counts >= 1 with non-negative probabilities, e.g. {1: 0.4, 2: 0.4, 3: 0.2}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> SceneConfig:
        for name in ("speech_utterances", "snr_db", "distant_db", "level_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: first value must not exceed the second (got {low}, {high})")
        return self

    @property
    def samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))


@dataclass
class Scene:
    """One mixed clip: audio, the events placed in it, and five reference captions."""

    audio: np.ndarray  # float32, mono, exactly config.samples long, peak <= config.peak
    sample_rate: int
    events: list[dict]  # {label, class, onset, offset, gain_db, md5, role, count}
    captions: list[str]
    seed: int
    split: str
    placed: list[PlacedEvent] = field(default_factory=list, repr=False)  # the events with their wording
    families: list[str] = field(default_factory=list)  # template family of each caption ("narrative", ...)


@dataclass
class Source:
    """A decoded recording, trimmed of leading/trailing silence and scaled to unit RMS."""

    audio: np.ndarray
    gain_db: float  # what the unit-RMS scaling added to the original level


class SourceBank:
    """Decoded sources by md5, least recently used dropped first once ``max_bytes`` is reached."""

    def __init__(self, cache_dir: str | Path, sample_rate: int, max_seconds: float, max_bytes: int):
        self.cache_dir = Path(cache_dir)
        self.sample_rate = sample_rate
        self.max_samples = int(max_seconds * sample_rate)
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Source | None] = OrderedDict()
        self._bytes = 0
        self.decoded = 0

    def get(self, row: CatalogRow) -> Source | None:
        """The source for ``row``; None when it is unreadable or silent (it is then never used)."""
        if row.md5 in self._items:
            self._items.move_to_end(row.md5)
            return self._items[row.md5]
        source = self._decode(row)
        self._items[row.md5] = source
        self._bytes += source.audio.nbytes if source else 0
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.audio.nbytes if old else 0
        return source

    def _decode(self, row: CatalogRow) -> Source | None:
        self.decoded += 1
        try:
            audio = read_recording(row, self.cache_dir, self.sample_rate)
        except AudioError as error:
            logger.warning(f"skipping an unreadable recording: {error}")
            return None
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak <= 1e-6:
            return None
        loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (_SILENCE_DB / 20))
        audio = audio[loud[0] : loud[-1] + 1][: self.max_samples]
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if audio.size < self.sample_rate // 50 or rms <= 1e-6:
            return None
        return Source(audio=(audio / rms).astype(np.float32), gain_db=-20 * np.log10(rms))


@dataclass
class _Pools:
    """Rows of one split, grouped the way the mixer draws them (class first, then recording)."""

    foreground: dict[str, list[CatalogRow]] = field(default_factory=lambda: defaultdict(list))
    background: dict[str, list[CatalogRow]] = field(default_factory=lambda: defaultdict(list))
    speech: dict[tuple[str, str], list[CatalogRow]] = field(default_factory=lambda: defaultdict(list))


class SceneMixer:
    """Mixes scenes from the catalog rows of one split; ``mix(seed)`` is deterministic."""

    def __init__(
        self,
        rows: Iterable[CatalogRow],
        cache_dir: str | Path,
        config: SceneConfig | object | None = None,
        split: str = "train",
        lexicon: Lexicon | None = None,
    ):
        config = getattr(config, "scene", config) or SceneConfig()
        if not isinstance(config, SceneConfig):
            raise TypeError(f"config must be a SceneConfig or have a .scene SceneConfig, got {type(config).__name__}")
        if split not in SPLITS:
            raise EdgeDacError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.config = config
        self.split = split
        self.lexicon = lexicon or load_lexicon()
        self.bank = SourceBank(cache_dir, config.sample_rate, config.max_source_seconds, config.cache_mb << 20)
        self.pools = self._pool(rows)
        self._fg_classes = sorted(self.pools.foreground)
        self._bg_classes = sorted(self.pools.background)
        self._speakers = sorted(self.pools.speech)
        if not self._fg_classes:
            raise EdgeDacError(
                f"no usable foreground recordings in the {split} split of the given packages; "
                "fetch more packages (edge-dac data fetch) or widen `packages` in the corpus config"
            )

    def _pool(self, rows: Iterable[CatalogRow]) -> _Pools:
        pools = _Pools()
        for row in rows:
            if row.split != self.split or any(note in row.notes for note in self.config.exclude_notes):
                continue
            if not self.lexicon.covers(row.class_name, row.label):
                continue
            event_class = self.lexicon.event_class(row.class_name or row.label)
            if row.kind == "speech":
                pools.speech[(row.speaker, event_class)].append(row)
            elif self.lexicon.entries[event_class].background and row.kind in ("ambience", "music"):
                pools.background[event_class].append(row)
            else:
                pools.foreground[event_class].append(row)
        return pools

    @property
    def rows(self) -> list[CatalogRow]:
        """Every row this mixer may use."""
        groups = [*self.pools.foreground.values(), *self.pools.background.values(), *self.pools.speech.values()]
        return [row for group in groups for row in group]

    def classes(self) -> list[str]:
        """Every event class this mixer can place (foreground, background and speech), sorted."""
        return sorted({*self.pools.foreground, *self.pools.background, *(c for _, c in self.pools.speech)})

    def twin(self) -> SceneMixer:
        """A mixer of the same rows and config sharing this one's decoded sources, without source
        augmentation: the same seed mixes the same scene as an unaugmented mixer would. (Training
        augments by wrapping ``bank``, keeping the plain bank as ``bank.inner``.)"""
        twin = copy.copy(self)
        twin.bank = getattr(self.bank, "inner", self.bank)
        return twin

    def preload(self, progress: bool = False) -> int:
        """Decode every usable source now (so later ``mix`` calls never touch the disk); returns
        how many are usable. Only worth it when the cache budget holds the whole split."""
        from tqdm import tqdm

        rows = self.rows
        usable = 0
        for row in tqdm(rows, desc=f"decoding {self.split} sources", unit="file", disable=not progress):
            usable += self.bank.get(row) is not None
        return usable

    # ------------------------------------------------------------------------------------ mixing

    @staticmethod
    def _caption_rng(seed: int) -> np.random.Generator:
        return np.random.default_rng([seed, 1])

    @classmethod
    def caption_families(cls, seed: int) -> list[str]:
        """The template family of each caption of scene ``seed`` (a scene with events), without
        mixing it: what a training target's wording code is, for scenes cached by seed."""
        return family_order(cls._caption_rng(seed))

    def mix(self, seed: int) -> Scene:
        """The scene for ``seed``: same seed, same rows, same config -> the same samples and captions."""
        cfg = self.config
        rng = np.random.default_rng(seed)
        n = cfg.samples
        counts = sorted(cfg.event_counts)
        weights = np.array([cfg.event_counts[c] for c in counts], dtype=np.float64)
        n_fg = min(int(rng.choice(counts, p=weights / weights.sum())), len(self._fg_classes), cfg.max_events)
        has_bg = bool(self._bg_classes) and rng.random() < cfg.background_prob and n_fg < cfg.max_events
        has_speech = bool(self._speakers) and rng.random() < cfg.speech_prob and n_fg + has_bg < cfg.max_events

        mixture = np.zeros(n, dtype=np.float32)
        used_classes: set[str] = set()
        background = self._place_background(rng, mixture, used_classes) if has_bg else None
        floor_db = background.level_db + 6.0 if background else -np.inf
        events = [background] + [self._place_foreground(rng, mixture, used_classes, floor_db) for _ in range(n_fg)]
        if has_speech:
            events.append(self._place_speech(rng, mixture))
        placed = [event for event in events if event is not None]

        # Loudness: RMS over the clip to a random target level, then a plain peak limit (a single
        # gain, so relative levels and the captions' "in the distance" stay true).
        rms = float(np.sqrt(np.mean(np.square(mixture, dtype=np.float64))))
        scale = 10 ** (rng.uniform(*cfg.level_db) / 20) / rms if rms > 1e-9 else 1.0
        peak = float(np.abs(mixture).max()) * scale
        if peak > cfg.peak:
            scale *= cfg.peak / peak
        mixture *= np.float32(scale)
        scale_db = 20 * np.log10(scale) if scale > 0 else 0.0
        for event in placed:
            event.gain_db += scale_db

        written = write_family_captions(placed, self._caption_rng(seed), cfg.seconds)
        return Scene(
            audio=mixture,
            sample_rate=cfg.sample_rate,
            events=[event.as_dict() for event in placed],
            captions=[text for _, text in written],
            families=[family for family, _ in written],
            seed=seed,
            split=self.split,
            placed=placed,
        )

    def _draw(self, rng: np.random.Generator, rows: Sequence[CatalogRow]) -> tuple[CatalogRow, Source] | None:
        """A readable row of ``rows``, drawn at random; None when none of them is readable."""
        for index in rng.permutation(len(rows)):
            source = self.bank.get(rows[index])
            if source is not None:
                return rows[index], source
        return None

    def _pick_class(self, rng: np.random.Generator, classes: list[str], used: set[str]) -> str | None:
        free = [c for c in classes if c not in used]
        return free[int(rng.integers(len(free)))] if free else None

    def _draw_new_class(
        self, rng: np.random.Generator, classes: list[str], pool: dict[str, list[CatalogRow]], used: set[str]
    ) -> tuple[str, CatalogRow, Source] | None:
        """A recording of a class not yet in the scene; the class is then marked used."""
        event_class = self._pick_class(rng, classes, used)
        drawn = self._draw(rng, pool[event_class]) if event_class else None
        if drawn is None:
            return None
        used.add(event_class)
        return (event_class, *drawn)

    def _place_background(self, rng: np.random.Generator, mixture: np.ndarray, used: set[str]) -> PlacedEvent | None:
        drawn = self._draw_new_class(rng, self._bg_classes, self.pools.background, used)
        if drawn is None:
            return None
        event_class, row, source = drawn
        n = mixture.size
        bed = source.audio
        start = int(rng.integers(bed.size))
        # Loop a short bed from a random point (ambiences are mostly loopable), crop a long one.
        loop = np.resize(np.roll(bed, -start), n) if bed.size < n else bed[start % max(1, bed.size - n + 1) :][:n]
        level_db = -float(rng.uniform(*self.config.snr_db))
        gain = 10 ** (level_db / 20)
        mixture += loop * np.float32(gain)
        return PlacedEvent(
            row=row,
            entry=self.lexicon.entry(row.label, event_class),
            event_class=event_class,
            onset=0.0,
            offset=self.config.seconds,
            gain_db=level_db + source.gain_db,
            role="background",
            count=1,
            level_db=level_db,
        )

    def _place_foreground(
        self, rng: np.random.Generator, mixture: np.ndarray, used: set[str], floor_db: float
    ) -> PlacedEvent | None:
        cfg, sr = self.config, self.config.sample_rate
        drawn = self._draw_new_class(rng, self._fg_classes, self.pools.foreground, used)
        if drawn is None:
            return None
        event_class, row, source = drawn
        clip = source.audio
        limit = int(min(cfg.max_event_seconds, cfg.seconds * 0.6) * sr)
        if clip.size > limit:
            length = int(rng.integers(min(limit, 2 * sr) // 2, limit + 1))
            start = int(rng.integers(clip.size - length + 1))
            clip = _faded(clip[start : start + length], sr)
        count = 1
        if clip.size < cfg.repeat_max_seconds * sr and rng.random() < cfg.repeat_prob:
            count = int(rng.integers(2, cfg.repeat_max + 1))
        gaps = (rng.uniform(0.15, 0.8, size=count - 1) * sr).astype(int)
        span = clip.size * count + int(gaps.sum())
        while count > 1 and span > mixture.size:  # too long to repeat that often: fewer repeats
            count -= 1
            gaps = gaps[: count - 1]
            span = clip.size * count + int(gaps.sum())
        onset = int(rng.integers(mixture.size - span + 1))
        distant = rng.random() < cfg.distant_prob
        level_db = float(rng.uniform(*cfg.distant_db)) if distant else float(rng.uniform(-cfg.jitter_db, cfg.jitter_db))
        level_db = max(level_db, floor_db)  # every event stands out from the background ...
        distant = distant and level_db <= -6.0  # ... and is only "in the distance" if still quiet then
        gain = np.float32(10 ** (level_db / 20))
        position = onset
        for i in range(count):
            mixture[position : position + clip.size] += clip * gain
            position += clip.size + (int(gaps[i]) if i < count - 1 else 0)
        return PlacedEvent(
            row=row,
            entry=self.lexicon.entry(row.label, event_class),
            event_class=event_class,
            onset=onset / sr,
            offset=(onset + span) / sr,
            gain_db=level_db + source.gain_db,
            role="foreground",
            count=count,
            level_db=level_db,
            distant=distant,
        )

    def _place_speech(self, rng: np.random.Generator, mixture: np.ndarray) -> PlacedEvent | None:
        """A few utterances of one speaker in a row, as one speech event."""
        cfg, sr = self.config, self.config.sample_rate
        speaker, event_class = self._speakers[int(rng.integers(len(self._speakers)))]
        rows = self.pools.speech[(speaker, event_class)]
        wanted = int(rng.integers(cfg.speech_utterances[0], cfg.speech_utterances[1] + 1))
        pieces: list[np.ndarray] = []
        first: CatalogRow | None = None
        gain_db = 0.0
        budget = int(min(cfg.max_speech_seconds, cfg.seconds) * sr)
        total = 0
        for _ in range(wanted):
            drawn = self._draw(rng, rows)
            if drawn is None:
                break
            row, source = drawn
            piece = source.audio[: budget - total]
            if piece.size < sr // 10:
                break
            if first is None:
                first, gain_db = row, source.gain_db
            pieces += [piece, np.zeros(int(rng.uniform(0.1, 0.4) * sr), dtype=np.float32)]
            total += pieces[-1].size + piece.size
            if total >= budget:
                break
        if first is None:
            return None
        speech = np.concatenate(pieces[:-1])[:budget]
        onset = int(rng.integers(mixture.size - speech.size + 1))
        level_db = float(rng.uniform(-cfg.jitter_db, cfg.jitter_db))
        mixture[onset : onset + speech.size] += speech * np.float32(10 ** (level_db / 20))
        return PlacedEvent(
            row=first,
            entry=self.lexicon.entry(first.label, event_class),
            event_class=event_class,
            onset=onset / sr,
            offset=(onset + speech.size) / sr,
            gain_db=level_db + gain_db,
            role="speech",
            count=1,
            level_db=level_db,
        )


def _faded(clip: np.ndarray, sample_rate: int) -> np.ndarray:
    """A copy with 20 ms linear fades at both ends, so a cropped source does not click."""
    n = min(int(_FADE_S * sample_rate), clip.size // 2)
    clip = clip.copy()
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        clip[:n] *= ramp
        clip[-n:] *= ramp[::-1]
    return clip
