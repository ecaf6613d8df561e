"""Source packs: the recordings a training run mixes from, decoded once and re-encoded small.

The fetch cache holds whole Debian packages (7.4 GB for the full catalog, most of it music and
files the mixer never reads). A pack keeps only what the mixer uses: each recording of the chosen
splits, mono, at the model's rate, cropped to ``max_seconds`` and stored as Ogg/Opus (about
3 kB per second of audio), plus its own ``catalog.csv`` and the fetch markers. A pack is a cache
directory: point ``data.cache_dir`` and ``data.catalog`` at it (or ``--cache``/``--catalog``) and
every reader of recordings takes ``packed/<md5>.opus`` instead of the package file. Made for
moving a corpus to a training machine that cannot fetch (a rented GPU, a cluster node).

Speech dominates the catalog by count (14,000 training utterances); ``speech_per_speaker`` keeps
a deterministic subset of each speaker's utterances (lowest md5 first), which still covers every
speaker the mixer can draw.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from edge_dac.data.catalog import PACK_SUFFIX, PACKED_DIR, CatalogRow, read_recording, write_catalog
from edge_dac.errors import AudioError, EdgeDacError


def packed_path(row: CatalogRow, cache_dir: str | Path) -> Path:
    return Path(cache_dir) / PACKED_DIR / f"{row.md5}{PACK_SUFFIX}"


@dataclass
class PackReport:
    recordings: int
    seconds: float
    bytes: int
    skipped: int
    out: Path

    def summary(self) -> str:
        return (
            f"packed {self.recordings} recordings ({self.seconds / 3600:.2f} h of audio) into {self.out}: "
            f"{self.bytes / 1e6:.1f} MB ({self.bytes / max(self.seconds, 1e-9) / 1000:.1f} kB/s)"
            + (f"; {self.skipped} unreadable skipped" if self.skipped else "")
        )


def choose_rows(rows: list[CatalogRow], splits: tuple[str, ...], speech_per_speaker: int | None) -> list[CatalogRow]:
    """The rows of ``splits``, speech thinned to ``speech_per_speaker`` utterances per speaker and split."""
    chosen, speech = [], defaultdict(list)
    for row in rows:
        if row.split not in splits:
            continue
        if row.kind == "speech" and speech_per_speaker is not None:
            speech[(row.split, row.package, row.speaker)].append(row)
        else:
            chosen.append(row)
    for group in speech.values():
        chosen += sorted(group, key=lambda row: row.md5)[:speech_per_speaker]
    return sorted(chosen, key=lambda row: (row.package, row.path))


def pack_sources(
    rows: list[CatalogRow],
    cache_dir: str | Path,
    out: str | Path,
    sample_rate: int = 16_000,
    max_seconds: float = 12.0,
    progress: bool = True,
) -> PackReport:
    """Write ``rows`` as a pack in ``out`` (resumable: recordings already packed are kept)."""
    cache_dir, out = Path(cache_dir), Path(out)
    if out.resolve() == cache_dir.resolve():
        raise EdgeDacError(f"--out {out} is the fetch cache itself; pick a new directory for the pack")
    (out / PACKED_DIR).mkdir(parents=True, exist_ok=True)
    kept: list[CatalogRow] = []
    seconds, skipped = 0.0, 0
    limit = int(max_seconds * sample_rate)
    for row in tqdm(rows, desc="pack", unit="rec", disable=not progress, dynamic_ncols=True):
        target = packed_path(row, out)
        if not target.is_file():
            try:
                audio = read_recording(row, cache_dir, sample_rate, max_seconds)[:limit]
            except (AudioError, EdgeDacError):
                skipped += 1
                continue
            if audio.size == 0:
                skipped += 1
                continue
            partial = target.with_suffix(".partial")
            # Written to a real file: libsndfile's Ogg writer has crashed on in-memory buffers here.
            sf.write(partial, np.clip(audio, -1.0, 1.0), sample_rate, format="OGG", subtype="OPUS")
            partial.replace(target)
        kept.append(row)
        seconds += min(row.duration_s, max_seconds)
    write_catalog(kept, out / "catalog.csv")
    markers = out / "markers"
    markers.mkdir(exist_ok=True)
    for package in sorted({row.package for row in kept}):
        source = cache_dir / "markers" / f"{package}.json"
        if source.is_file():
            shutil.copyfile(source, markers / source.name)
        else:
            (markers / f"{package}.json").write_text("{}\n")
    size = sum(path.stat().st_size for path in (out / PACKED_DIR).glob(f"*{PACK_SUFFIX}"))
    return PackReport(len(kept), seconds, size, skipped, out)

