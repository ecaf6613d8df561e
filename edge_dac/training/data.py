"""Training data: micro-batches indexed by (step, shard), so every run is reproducible and resumable.

A *shard* is one micro-batch of a global batch (``TrainConfig.shards``); rank r's micro-step m
trains shard ``r * accumulation + m``. Whatever a shard holds depends only on the seed, the step
and the shard number, never on how many processes share the work, so

- one process with gradient accumulation and several DDP processes see the same data;
- resuming at step k yields exactly the batches an uninterrupted run would have seen.

Two kinds of source:

- ``MixedScenes``: fresh scenes from the scene mixer (train split), each source optionally
  augmented, a random one of the scene's five captions; or, with ``scene_pool``, scenes drawn from
  a fixed pool of seeds (a fixed corpus that is revisited every epoch).
- ``CachedClips``: a manifest's clips as log-mel features cached on disk; each epoch is a fresh
  permutation cut into consecutive global batches, and each shard takes its own slice of the
  global batch (what a DistributedSampler does, but indexed by step so it resumes mid-epoch).

Validation sets (``ValidationSet``) are fixed: a few val-split scenes mixed once with fixed seeds,
or a manifest's val items; their audio and log-mels are cached on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from tqdm import tqdm

from edge_dac.data.datasets import CaptionItem, load_item_audio
from edge_dac.data.mixer import Scene, SceneMixer
from edge_dac.errors import AudioError
from edge_dac.lexicon import load_lexicon
from edge_dac.model.dims import ModelDims
from edge_dac.model.frontend import LogMel
from edge_dac.training.augment import AugmentingBank
from edge_dac.training.config import AugmentSection

_SCENE, _POOL, _CAPTION, _AUGMENT = 1, 2, 3, 4  # streams of derive_seed, so they never collide

# Wording code of each caption family (DAC's ``wording_codes``): candidate k of a window writes
# wording k, so the plainest family comes first (one candidate writes a plain listing).
WORDINGS = ("listing", "narrative", "gerund", "setting_first", "anchored")


def wording_code(family: str | None) -> int:
    """The code of a caption family; captions of unknown family (a manifest, silence) get code 0."""
    return WORDINGS.index(family) if family in WORDINGS else 0


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends only on ``parts`` (non-negative integers)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


@dataclass
class Batch:
    """One micro-batch: waveforms (mixer) or cached log-mels (manifest), one caption per clip,
    and each clip's event classes (empty when unknown)."""

    captions: list[str]
    labels: list[set[str]]
    audio: torch.Tensor | None = None  # (batch, samples)
    mel: torch.Tensor | None = None  # (batch, n_mels, frames)
    codes: list[int] | None = None  # wording code of each caption
    events: list[list[tuple[str, float, float]]] | None = None  # (class, onset s, offset s) per clip, if known


def fit_samples(audio: np.ndarray, samples: int) -> np.ndarray:
    """Crop or zero-pad a waveform to exactly ``samples``."""
    return audio[:samples] if audio.size >= samples else np.pad(audio, (0, samples - audio.size))


def scene_events(events: Sequence[dict]) -> list[tuple[str, float, float]]:
    """(class, onset, offset) of a scene's or manifest item's events (those with times)."""
    return [
        (str(e.get("class") or e.get("label")), float(e["onset"]), float(e["offset"]))
        for e in events
        if "onset" in e and "offset" in e
    ]


def frame_targets(
    events: Sequence[Sequence[tuple[str, float, float]]], classes: Sequence[str], frames: int, frame_seconds: float
) -> torch.Tensor:
    """(clips, frames, classes) 0/1 sound-event-detection targets: frame f is on for a class when its
    centre, (f + 0.5) * frame_seconds, lies within one of that class's events."""
    index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(events), frames, len(classes))
    centres = (np.arange(frames) + 0.5) * frame_seconds
    for row, clip in enumerate(events):
        for name, onset, offset in clip:
            if name in index:
                on = torch.from_numpy((centres >= onset) & (centres < offset))
                targets[row, on, index[name]] = 1.0
    return targets


def labels_of_item(item: CaptionItem) -> set[str]:
    """An item's event classes: from its events where it has them, else what its captions name."""
    if item.events:
        return {str(event.get("class") or event.get("label")) for event in item.events}
    lexicon = load_lexicon()
    return set().union(*(lexicon.labels_in_caption(caption) for caption in item.captions))


class MixedScenes:
    """Micro-batches of scenes mixed on the fly from one split."""

    def __init__(
        self,
        mixer: SceneMixer,
        seed: int,
        samples: int,
        augment: AugmentSection | None = None,
        pool: int | None = None,
        families: list[str] | None = None,
    ):
        self.mixer = mixer
        self.families = set(families) if families else None
        self.seed = seed
        self.samples = samples
        self.pool = pool
        self.augmenting: AugmentingBank | None = None
        if augment is not None and augment.source_prob > 0:
            # Sources longer than a scene are cut first: augmenting 30 s to use 5 s wastes the FFTs.
            self.augmenting = AugmentingBank(mixer.bank, augment, mixer.config.seconds)
            mixer.bank = self.augmenting  # type: ignore[assignment]

    def scene_seed(self, step: int, shard: int, index: int) -> int:
        drawn = derive_seed(self.seed, _SCENE, step, shard, index)
        if self.pool is None:
            return drawn
        return self.pool_seed(drawn % self.pool)

    def pool_seed(self, index: int) -> int:
        return derive_seed(self.seed, _POOL, index)

    def scene(self, step: int, shard: int, index: int) -> Scene:
        """Scene ``index`` of a shard's micro-batch, augmented as training sees it, with all its captions."""
        if self.augmenting is not None:
            self.augmenting.rng = np.random.default_rng(derive_seed(self.seed, _AUGMENT, step, shard, index))
        return self.mixer.mix(self.scene_seed(step, shard, index))

    def batch(self, step: int, shard: int, size: int) -> Batch:
        audio, captions, labels, codes, events = [], [], [], [], []
        for index in range(size):
            scene = self.scene(step, shard, index)
            pick = np.random.default_rng(derive_seed(self.seed, _CAPTION, step, shard, index))
            audio.append(fit_samples(scene.audio, self.samples))
            choices = [
                (caption, family)
                for caption, family in zip(scene.captions, scene.families, strict=True)
                if self.families is None or family in self.families or family == "silence"
            ] or list(zip(scene.captions, scene.families, strict=True))
            caption, family = choices[int(pick.integers(len(choices)))]
            captions.append(caption)
            codes.append(wording_code(family))
            labels.append({event["class"] for event in scene.events})
            events.append(scene_events(scene.events))
        return Batch(
            captions=captions, labels=labels, audio=torch.from_numpy(np.stack(audio)), codes=codes, events=events
        )


class CachedClips:
    """Micro-batches of a manifest's clips, from log-mels cached on disk."""

    def __init__(
        self, mel: np.ndarray, captions: Sequence[list[str]], labels: Sequence[set[str]], seed: int, shards: int,
        events: Sequence[list[tuple[str, float, float]]] | None = None,
    ):
        self.mel = mel
        self.captions = captions
        self.labels = labels
        self.events = events
        self.seed = seed
        self.shards = shards
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.captions)))
        return self._order[1]

    def batch(self, step: int, shard: int, size: int) -> Batch:
        first = (step * self.shards + shard) * size  # position in the endless sequence of epochs
        rows, captions = [], []
        for position in range(first, first + size):
            epoch, offset = divmod(position, len(self.captions))
            row = int(self._epoch_order(epoch)[offset])
            references = self.captions[row]
            pick = np.random.default_rng(derive_seed(self.seed, _CAPTION, step, shard, position))
            rows.append(row)
            captions.append(references[int(pick.integers(len(references)))])
        mel = torch.from_numpy(np.stack([np.asarray(self.mel[row], dtype=np.float32) for row in rows]))
        events = [list(self.events[row]) for row in rows] if self.events is not None else None
        return Batch(captions=captions, labels=[set(self.labels[row]) for row in rows], mel=mel, events=events)


class StepBatches(IterableDataset):
    """This rank's micro-batches in training order, from ``start_step`` to ``steps``.

    DataLoader workers take turns (worker w makes every w-th micro-batch) and the DataLoader reads
    them back in the same round-robin order, so the order does not depend on the worker count.
    """

    def __init__(
        self, source: MixedScenes | CachedClips, start_step: int, steps: int, rank: int, accumulation: int, size: int
    ):
        self.source = source
        self.start_step, self.steps = start_step, steps
        self.rank, self.accumulation, self.size = rank, accumulation, size

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        turn = 0
        for step in range(self.start_step, self.steps):
            for micro in range(self.accumulation):
                if turn % workers == worker:
                    yield self.source.batch(step, self.rank * self.accumulation + micro, self.size)
                turn += 1


def keep_batch(batch: Batch) -> Batch:
    """DataLoader collate function: batches are made whole by the dataset."""
    return batch


# --- fixed data: log-mels (and for validation, audio) cached on disk ---------------------------------


def _frontend_key(dims: ModelDims) -> dict:
    return {k: getattr(dims, k) for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "max_audio_seconds")}


def cache_key(dims: ModelDims, content: object) -> str:
    text = json.dumps({"frontend": _frontend_key(dims), "content": content}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def item_fingerprint(item: CaptionItem) -> list:
    stat = item.audio.stat()
    return [str(item.audio), stat.st_size, stat.st_mtime_ns, item.offset_s, item.duration_s]


def log_mels(audio: np.ndarray, dims: ModelDims, frontend: LogMel | None = None) -> np.ndarray:
    """(clips, samples) waveforms -> (clips, n_mels, frames) log-mels, float16, in chunks."""
    frontend = frontend or LogMel(dims)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(audio), 64):
            chunks.append(frontend(torch.from_numpy(np.asarray(audio[start : start + 64], dtype=np.float32))).numpy())
    return np.concatenate(chunks).astype(np.float16)


def manifest_features(
    items: Sequence[CaptionItem], dims: ModelDims, cache_dir: Path, progress: bool = True
) -> np.ndarray:
    """The items' log-mels as a read-only memory map, computed once into ``cache_dir``."""
    key = cache_key(dims, [item_fingerprint(item) for item in items])
    path = Path(cache_dir) / f"features-{key}.npy"
    if not path.is_file():
        frontend = LogMel(dims)
        frames = dims.max_mel_frames
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npy")
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(len(items), dims.n_mels, frames))
        for index, item in enumerate(tqdm(items, desc="log-mel cache", unit="clip", disable=not progress)):
            try:
                audio = load_item_audio(item, dims.sample_rate)
            except AudioError as error:
                raise AudioError(f"{error}; fix or remove it from the manifest") from None
            out[index] = log_mels(fit_samples(audio, dims.max_audio_samples)[None], dims, frontend)[0]
        out.flush()
        del out
        partial.replace(path)
    return np.load(path, mmap_mode="r")


@dataclass
class ValidationSet:
    """Fixed clips scored at every validation: loss on the log-mels, event-F1 of generated captions."""

    name: str
    audio: np.ndarray  # (clips, samples) float16
    mel: np.ndarray  # (clips, n_mels, frames) float16
    captions: list[list[str]]
    labels: list[set[str]]

    def __len__(self) -> int:
        return len(self.captions)

    def save(self, path: Path) -> None:
        np.savez(
            path, audio=self.audio, mel=self.mel, meta=json.dumps([self.captions, [sorted(x) for x in self.labels]])
        )

    @classmethod
    def load(cls, name: str, path: Path) -> ValidationSet:
        with np.load(path) as data:
            captions, labels = json.loads(str(data["meta"]))
            return cls(name, data["audio"], data["mel"], captions, [set(x) for x in labels])


def validation_scenes(
    name: str, mixer: SceneMixer, seeds: Sequence[int], dims: ModelDims, cache_dir: Path
) -> ValidationSet:
    """Scenes with fixed seeds, mixed once (no augmentation) and cached."""
    rows = sorted(row.md5 for row in mixer.rows)
    key = cache_key(dims, {"scene": mixer.config.model_dump(), "seeds": list(seeds), "rows": rows})
    path = Path(cache_dir) / f"{name}-{key}.npz"
    if path.is_file():
        return ValidationSet.load(name, path)
    audio, captions, labels = [], [], []
    for seed in seeds:
        scene = mixer.mix(seed)
        audio.append(fit_samples(scene.audio, dims.max_audio_samples))
        captions.append(scene.captions)
        labels.append({event["class"] for event in scene.events})
    stacked = np.stack(audio)
    result = ValidationSet(name, stacked.astype(np.float16), log_mels(stacked, dims), captions, labels)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    result.save(path)
    return result


def validation_items(name: str, items: Sequence[CaptionItem], dims: ModelDims, cache_dir: Path) -> ValidationSet:
    """A manifest's items as a validation set, decoded once and cached."""
    key = cache_key(dims, [item_fingerprint(item) for item in items])
    path = Path(cache_dir) / f"{name}-{key}.npz"
    if path.is_file():
        return ValidationSet.load(name, path)
    audio = np.stack([fit_samples(load_item_audio(item, dims.sample_rate), dims.max_audio_samples) for item in items])
    result = ValidationSet(
        name,
        audio.astype(np.float16),
        log_mels(audio, dims),
        [list(i.captions) for i in items],
        [labels_of_item(i) for i in items],
    )
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    result.save(path)
    return result
