"""Captioned audio datasets on disk, as one list of ``CaptionItem`` for training and evaluation.

``load_manifest`` recognises four layouts by file type and columns:
- this project's ``manifest.jsonl`` (``edge-dac data build``): one JSON object per clip with
  ``audio`` (relative to the manifest's directory), ``captions`` (list), ``events``, ``split``,
  ``seed``, ``id``;
- Clotho CSV: ``file_name, caption_1 .. caption_5``; audio in ``audio_root``, the CSV's directory,
  or the CSV's sibling ``development``/``validation``/``evaluation`` directory;
- AudioCaps CSV: ``audiocap_id, youtube_id, start_time, caption``, one caption per row (rows of one
  clip are grouped); audio ``<youtube_id>.*``, ``Y<youtube_id>.*`` or ``<audiocap_id>.*`` anywhere
  under ``audio_root``; a file longer than the 10 s clip is read from ``start_time``;
- plain CSV or JSONL with ``audio, caption`` (optional ``split``, ``id``); rows of one audio file
  are grouped.
Every audio file is checked (exists, soundfile reads its header) before training starts, so a bad
path fails in the first second, in one line, not hours later.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from loguru import logger

from edge_dac.audio import SAMPLE_RATE, check_samples, resample, to_mono
from edge_dac.errors import AudioError, EdgeDacError

AUDIOCAPS_CLIP_S = 10.0
# Looked for by AudioCaps ids. m4a/webm (what YouTube downloaders write) are listed so that such a
# file is reported as unreadable, not as missing: soundfile cannot decode them.
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a", ".webm"}
_CLOTHO_SPLITS = {"development": "train", "validation": "val", "evaluation": "test"}
_AUDIOCAPS_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_EXPECTED = (
    "expected one of: this corpus's manifest.jsonl (audio, captions), Clotho CSV (file_name, caption_1..5), "
    "AudioCaps CSV (audiocap_id, youtube_id, start_time, caption), or CSV/JSONL with (audio, caption)"
)


@dataclass
class CaptionItem:
    audio: Path
    captions: list[str]
    events: list[dict] | None = None  # corpus scenes: [{label, onset, offset, gain, ...}]
    split: str | None = None  # train / val / test where the source says
    id: str = ""
    offset_s: float = 0.0  # AudioCaps: where the captioned clip starts in the file
    duration_s: float | None = None  # length of the captioned clip; None = to the end of the file


@dataclass
class Manifest:
    path: Path
    format: str  # "corpus", "clotho", "audiocaps", "plain"
    items: list[CaptionItem] = field(default_factory=list)
    skipped: int = 0  # items dropped by skip_bad for missing or unreadable audio

    def __len__(self) -> int:
        return len(self.items)

    def split(self, name: str) -> list[CaptionItem]:
        return [item for item in self.items if item.split == name]


def load_manifest(path: str | Path, audio_root: str | Path | None = None, skip_bad: bool = False) -> Manifest:
    """Read a caption dataset (format auto-detected) and check that every audio file is readable.

    ``path`` may also be a directory holding ``manifest.jsonl``. ``audio_root`` overrides where
    relative audio paths are looked up (default: the manifest's directory).
    """
    path = Path(path).expanduser()
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise EdgeDacError(f"{path}: caption dataset not found; pass a manifest.jsonl or a captions CSV/JSONL")
    root = Path(audio_root).expanduser() if audio_root is not None else None
    if root is not None and not root.is_dir():
        raise EdgeDacError(f"--audio-root {root}: not a directory")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        fmt, items = _read_jsonl(path, root or path.parent)
    elif suffix in (".csv", ".tsv"):
        fmt, items = _read_csv(path, root)
    else:
        raise EdgeDacError(f"{path}: unknown dataset file type {suffix or '(none)'}; {_EXPECTED}")
    if not items:
        raise EdgeDacError(f"{path}: holds no captioned audio; {_EXPECTED}")
    without_caption = [item for item in items if not item.captions]
    if without_caption:
        raise EdgeDacError(
            f"{path}: {len(without_caption)} of {len(items)} items have no caption "
            f"(first: {without_caption[0].id or without_caption[0].audio}); add captions or remove them"
        )
    manifest = Manifest(path=path, format=fmt, items=items)
    _drop_unreadable(manifest, skip_bad)
    return manifest


def _drop_unreadable(manifest: Manifest, skip_bad: bool) -> None:
    bad = [item for item in manifest.items if not _readable(item.audio)]
    if not bad:
        return
    total = len(manifest.items)
    if not skip_bad:
        examples = ", ".join(str(item.audio) for item in bad[:3])
        raise EdgeDacError(
            f"{len(bad)} of {total} audio files in {manifest.path} are missing or unreadable "
            f"(first: {examples}); fix the paths or pass --skip-bad"
        )
    bad_ids = {id(item) for item in bad}
    manifest.items = [item for item in manifest.items if id(item) not in bad_ids]
    manifest.skipped = len(bad)
    logger.warning(f"{manifest.path}: skipped {len(bad)} of {total} items whose audio is missing or unreadable")


def _readable(path: Path) -> bool:
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        return False
    return info.frames > 0 and info.samplerate > 0


# --- JSONL: this corpus's manifest, or plain audio/caption rows -----------------------------------


def _read_jsonl(path: Path, root: Path) -> tuple[str, list[CaptionItem]]:
    records = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise EdgeDacError(f"{path}:{line_number}: not valid JSON ({error.msg}); one object per line") from None
            if (
                not isinstance(record, dict)
                or "audio" not in record
                or not ("captions" in record or "caption" in record)
            ):
                keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                raise EdgeDacError(f"{path}:{line_number}: has {keys or 'no keys'}; {_EXPECTED}")
            records.append((line_number, record))
    if records and all("captions" in record for _, record in records):
        return "corpus", [_corpus_item(path, n, record, root) for n, record in records]
    rows = [
        {
            "audio": r["audio"],
            "caption": r.get("caption", r.get("captions")),
            "split": r.get("split"),
            "id": r.get("id"),
        }
        for _, r in records
    ]
    return "plain", _group_plain(rows, root)


def _corpus_item(path: Path, line_number: int, record: dict, root: Path) -> CaptionItem:
    captions, events = record["captions"], record.get("events")
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise EdgeDacError(f"{path}:{line_number}: 'captions' must be a list of strings")
    if events is not None and not (isinstance(events, list) and all(isinstance(e, dict) for e in events)):
        raise EdgeDacError(f"{path}:{line_number}: 'events' must be a list of objects (label, onset, offset, ...)")
    return CaptionItem(
        audio=root / record["audio"],
        captions=[c.strip() for c in captions if c.strip()],
        events=events,
        split=record.get("split"),
        id=str(record.get("id") or Path(record["audio"]).stem),
    )


# --- CSV: Clotho, AudioCaps, plain ------------------------------------------------------------------


def _read_csv(path: Path, root: Path | None) -> tuple[str, list[CaptionItem]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as file:  # utf-8-sig: spreadsheets add a BOM
        reader = csv.DictReader(file, delimiter=delimiter)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        rows = list(reader)
    if "file_name" in columns and "caption_1" in columns:
        return "clotho", _clotho_items(path, rows, columns, root)
    if {"audiocap_id", "youtube_id", "start_time", "caption"} <= set(columns):
        return "audiocaps", _audiocaps_items(path, rows, root)
    if {"audio", "caption"} <= set(columns):
        return "plain", _group_plain(rows, root or path.parent)
    raise EdgeDacError(f"{path}: unrecognised columns ({', '.join(columns) or 'none'}); {_EXPECTED}")


def _clotho_items(path: Path, rows: list[dict], columns: list[str], root: Path | None) -> list[CaptionItem]:
    caption_columns = sorted((c for c in columns if re.fullmatch(r"caption_\d+", c)), key=lambda c: int(c[8:]))
    split_word = next((word for word in _CLOTHO_SPLITS if word in path.stem.lower()), None)
    roots = [root] if root is not None else [path.parent] + ([path.parent / split_word] if split_word else [])
    items = []
    for row in rows:
        name = (row["file_name"] or "").strip()
        audio = next((r / name for r in roots if (r / name).is_file()), roots[0] / name)
        captions = [(row[c] or "").strip() for c in caption_columns]
        items.append(
            CaptionItem(
                audio=audio,
                captions=[c for c in captions if c],
                split=_CLOTHO_SPLITS.get(split_word) if split_word else None,
                id=Path(name).stem,
            )
        )
    return items


def _audiocaps_items(path: Path, rows: list[dict], root: Path | None) -> list[CaptionItem]:
    root = root or path.parent
    by_stem: dict[str, Path] = {}
    for file in sorted(root.rglob("*")):
        if file.suffix.lower() in AUDIO_SUFFIXES:
            by_stem.setdefault(file.stem, file)
    split = _AUDIOCAPS_SPLITS.get(path.stem.lower())
    clips: dict[tuple[str, str], CaptionItem] = {}
    for line_number, row in enumerate(rows, start=2):
        youtube_id, cap_id = row["youtube_id"].strip(), row["audiocap_id"].strip()
        try:
            start = float(row["start_time"])
        except (TypeError, ValueError):
            raise EdgeDacError(f"{path}:{line_number}: start_time {row['start_time']!r} is not a number") from None
        key = (youtube_id, row["start_time"].strip())
        if key not in clips:
            audio = by_stem.get(youtube_id) or by_stem.get(f"Y{youtube_id}") or by_stem.get(cap_id)
            clips[key] = CaptionItem(
                audio=audio or root / f"{youtube_id}.wav",
                captions=[],
                split=split,
                id=f"{youtube_id}_{start:g}",
                offset_s=start,
                duration_s=AUDIOCAPS_CLIP_S,
            )
        if (row["caption"] or "").strip():
            clips[key].captions.append(row["caption"].strip())
    return list(clips.values())


def _group_plain(rows: list[dict], root: Path) -> list[CaptionItem]:
    """Rows (audio, caption[, split, id]) -> one item per audio file with all its captions, in file order."""
    items: dict[str, CaptionItem] = {}
    for row in rows:
        audio = str(row["audio"] or "").strip()
        captions = row["caption"] if isinstance(row["caption"], list) else [row["caption"]]
        item = items.setdefault(
            audio,
            CaptionItem(audio=root / audio, captions=[], split=row.get("split") or None, id=row.get("id") or ""),
        )
        item.captions += [str(c).strip() for c in captions if c is not None and str(c).strip()]
        item.id = item.id or Path(audio).stem
    return list(items.values())


# --- audio --------------------------------------------------------------------------------------------


def load_item_audio(item: CaptionItem, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The item's captioned audio as mono float32 at ``sample_rate``, cut to its offset and duration.

    A file no longer than the clip (a pre-cut AudioCaps clip) is read whole: its offset refers to
    the original YouTube video, not to the file.
    """
    path = str(item.audio)
    try:
        info = soundfile.info(path)
        start, frames = 0, -1
        if item.duration_s is not None and info.duration > item.duration_s + 0.5:
            start = min(int(round(item.offset_s * info.samplerate)), info.frames)
            frames = int(round(item.duration_s * info.samplerate))
        elif item.duration_s is None and item.offset_s:
            start = min(int(round(item.offset_s * info.samplerate)), info.frames)
        samples, rate = soundfile.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{path}: not a readable audio file ({error}); use WAV, FLAC, OGG or MP3") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from None
    return check_samples(resample(to_mono(samples), int(rate), sample_rate), path)
