"""Audio file I/O: load any common format as mono float32 at the model's rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3; soxr resamples. Every problem a
user can cause becomes an ``AudioError`` with one line naming the file and the problem.
``load_audio`` decodes a whole file; ``stream_audio`` decodes it block by block, for files of hours.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from edge_dac.errors import AudioError

SAMPLE_RATE = 16_000


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: (frames, channels) -> (frames,)."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling of a mono float32 signal."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, source_rate, target_rate).astype(np.float32, copy=False)


def check_samples(samples: np.ndarray, name: str) -> np.ndarray:
    """Reject empty audio and NaN/inf samples, which would poison every window they touch."""
    if samples.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples); record or export it again")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"{name}: {bad} samples are NaN or infinite; the file is corrupt, export it again")
    return samples


def _read(source, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Samples and rate; with ``max_seconds``, only the start is decoded (long music files)."""
    if max_seconds is None:  # soundfile.read also handles unseekable formats (GSM) of unknown length
        return soundfile.read(source, dtype="float32", always_2d=True)
    with soundfile.SoundFile(source) as handle:
        return handle.read(int(max_seconds * handle.samplerate), dtype="float32", always_2d=True), handle.samplerate


def decode_audio(
    data: bytes | io.BytesIO, name: str, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Decode in-memory audio bytes (e.g. a member of a zip archive) to mono float32."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        samples, rate = _read(source, max_seconds)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{name}: not a readable audio file ({error}); use WAV, FLAC, OGG or MP3") from None
    return check_samples(resample(to_mono(samples), int(rate), sample_rate), name)


def check_readable(path: str | Path) -> Path:
    """``path`` if it is a file this process may read; else an ``AudioError`` saying which it is not
    (libsndfile reports a file it may not open as a "System error", which reads like a bad format)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory; pass audio files (e.g. {path}/*.wav)")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise AudioError(f"{path}: permission denied (this user may not read it); check its owner and mode") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from None
    return path


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file (its first ``max_seconds`` only, if given) as mono float32 at ``sample_rate``."""
    path = check_readable(path)
    try:
        samples, rate = _read(str(path), max_seconds)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = str(error).split(":", 1)[-1].strip() or "unknown format"
        raise AudioError(f"{path}: not a readable audio file ({reason}); use WAV, FLAC, OGG or MP3") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from None
    return check_samples(resample(to_mono(samples), int(rate), sample_rate), str(path))


STREAM_BLOCK_S = 10.0


def stream_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, block_s: float = STREAM_BLOCK_S
) -> Iterator[np.ndarray]:
    """A file as consecutive blocks of mono float32 at ``sample_rate``, decoded ``block_s`` at a time.

    The blocks joined are exactly ``load_audio(path, sample_rate)`` (soxr's stream resampler writes
    the same samples as its one-shot one), but memory holds one block, not the file. The same
    ``AudioError``s, raised when the problem is met: on opening, or at the block holding NaN samples,
    or at the end for a file with no samples.
    """
    path = check_readable(path)
    try:
        handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = str(error).split(":", 1)[-1].strip() or "unknown format"
        raise AudioError(f"{path}: not a readable audio file ({reason}); use WAV, FLAC, OGG or MP3") from None
    with handle:
        rate = int(handle.samplerate)
        resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
        frames = max(1, int(block_s * rate))
        total = 0
        while True:
            try:
                samples = to_mono(handle.read(frames, dtype="float32", always_2d=True))
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"{path}: cannot decode past sample {total} ({error}); the file is damaged") from None
            last = len(samples) < frames
            if resampler is not None:
                samples = resampler.resample_chunk(samples, last=last)
            if samples.size:
                if not np.isfinite(samples).all():
                    bad = int((~np.isfinite(samples)).sum())
                    raise AudioError(f"{path}: {bad} samples are NaN or infinite; the file is corrupt, export it again")
                total += samples.size
                yield samples.astype(np.float32, copy=False)
            if last:
                break
    if total == 0:
        raise AudioError(f"{path}: audio is empty (0 samples); record or export it again")
