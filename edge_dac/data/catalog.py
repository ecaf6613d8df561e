"""The soundscape catalog: real, labelled recordings that ship inside Debian packages.

``catalog.csv`` (in ``shared/soundscape/`` beside the repository) lists one recording per row:
the package it comes in, its path inside the package, its label and split, and the md5 of its
bytes. ``edge-dac data fetch`` unpacks the packages into a cache directory; this module finds the
catalog, reads it, and reads one recording from the cache as mono float32.

Some recordings live inside a container file of the package:
- ``ARCHIVE!MEMBER``: a member of a zip archive (games ship ``.zip``, ``.pk3``, ``.wz`` and
  GrandOrgue ``.orgue`` files, all zip);
- ``SOUNDS.cat#NN_NAME.wav``: entry NN of an OpenTTD sound catalog (a table of offsets followed by
  WAV files, each preceded by its title).
The catalog's md5 of such a row is the md5 of the member's own bytes (uncompressed zip member; the
WAV bytes of a .cat entry). A few archive paths hold a glob (``baseoa/*.pk3``, ``demo-*.orgue``)
because the file name carries a hash or version; it is resolved against the unpacked files.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from zlib import error as zlib_error

import numpy as np

from edge_dac.audio import SAMPLE_RATE, decode_audio, load_audio
from edge_dac.const import CATALOG_ENV, RELATIVE_CATALOG, REPO_ROOT
from edge_dac.errors import AudioError, EdgeDacError

ARCHIVE_SUFFIXES = (".zip", ".pk3", ".wz", ".orgue")  # zip files, members after "!"
SOUND_CATALOG_SUFFIX = ".cat"  # OpenTTD sound catalogs, members after "#"
PACKED_DIR, PACK_SUFFIX = "packed", ".opus"  # a source pack's recordings (edge_dac.data.pack)


@dataclass(frozen=True)
class CatalogRow:
    package: str
    version: str
    path: str
    format: str
    duration_s: float
    sample_rate: int
    channels: int
    label: str
    class_name: str  # the CSV column "class"
    category: str
    kind: str
    speaker: str
    license: str
    md5: str
    split: str
    notes: str

    @property
    def archive(self) -> str | None:
        """Path of the container file (zip archive or .cat) inside the package, or None for a plain file."""
        archive, member = split_archive_path(self.path)
        return archive if member is not None else None

    @property
    def member(self) -> str | None:
        """Name of the member inside the container, or None for a plain file."""
        return split_archive_path(self.path)[1]


_COLUMNS = [f.name if f.name != "class_name" else "class" for f in fields(CatalogRow)]


def split_archive_path(path: str) -> tuple[str, str | None]:
    """``"a/b.pk3!snd/x.wav"`` -> ``("a/b.pk3", "snd/x.wav")``, ``"s.cat#03_Horn.wav"`` -> ``("s.cat",
    "03_Horn.wav")``; a plain path -> ``(path, None)``.

    Member names may themselves contain "!" or "#" ("You_are_Victorious!.ogg", "030-F#.wav"), so
    split at the first separator that follows a container suffix rather than at any.
    """
    for index, char in enumerate(path):
        if char == "!" and path[:index].lower().endswith(ARCHIVE_SUFFIXES):
            return path[:index], path[index + 1 :]
        if char == "#" and path[:index].lower().endswith(SOUND_CATALOG_SUFFIX):
            return path[:index], path[index + 1 :]
    return path, None


def find_catalog(path: str | Path | None = None) -> Path:
    """Locate catalog.csv: ``path``, else ``$EDGE_DAC_CATALOG``, else ``../shared/soundscape/catalog.csv``
    next to the repository root or the current directory."""
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get(CATALOG_ENV):
        candidates = [Path(os.environ[CATALOG_ENV])]
    else:
        candidates = [REPO_ROOT / RELATIVE_CATALOG, Path.cwd() / RELATIVE_CATALOG]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise EdgeDacError(
        f"soundscape catalog not found (looked at {looked}); set {CATALOG_ENV}=/path/to/catalog.csv or pass --catalog"
    )


def load_catalog(path: str | Path | None = None) -> list[CatalogRow]:
    """All rows of the catalog (parsed once per file and modification time)."""
    catalog = find_catalog(path)
    return list(_load_catalog_cached(catalog, catalog.stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _load_catalog_cached(catalog: Path, mtime_ns: int) -> tuple[CatalogRow, ...]:
    with open(catalog, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise EdgeDacError(f"{catalog}: not a soundscape catalog (missing columns {', '.join(missing)})")
        index = [header.index(c) for c in _COLUMNS]
        rows = []
        for line_number, values in enumerate(reader, start=2):
            if not values:
                continue
            try:
                v = [values[i] for i in index]
                rows.append(CatalogRow(*v[:4], float(v[4]), int(v[5]), int(v[6]), *v[7:]))
            except (IndexError, ValueError) as error:
                raise EdgeDacError(f"{catalog}:{line_number}: malformed row ({error})") from None
    return tuple(rows)


def write_catalog(rows: Iterable[CatalogRow], path: str | Path) -> None:
    """Write rows in the catalog's own CSV format (what ``load_catalog`` reads back)."""
    names = [f.name for f in fields(CatalogRow)]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(_COLUMNS)
        writer.writerows([getattr(row, name) for name in names] for row in rows)


def package_root(package: str, cache_dir: str | Path) -> Path:
    """Directory a package is unpacked into."""
    return Path(cache_dir) / "root" / package


def recording_path(row: CatalogRow, cache_dir: str | Path) -> Path:
    """Where the row's file lives once unpacked; for ``ARCHIVE!MEMBER`` the archive.

    A glob in the archive name is resolved when the package is unpacked; before that the
    returned path still holds the glob and does not exist.
    """
    archive, member = split_archive_path(row.path)
    path = package_root(row.package, cache_dir) / archive
    if member is not None and _has_glob(archive):
        path = _resolve_archive_glob(path, member) or path
    return path


def read_members(container: str | Path, members: Iterable[str]) -> dict[str, bytes]:
    """The bytes of the wanted members of a zip archive or OpenTTD .cat; absent members are left out.

    Raises ``ValueError`` when the container is damaged.
    """
    container = Path(container)
    wanted = set(members)
    if container.name.lower().endswith(SOUND_CATALOG_SUFFIX):
        return _read_sound_catalog(container, wanted)
    try:
        with zipfile.ZipFile(container) as archive:
            return {name: archive.read(name) for name in wanted & set(archive.namelist())}
    except (zipfile.BadZipFile, EOFError, zlib_error) as error:
        raise ValueError(f"damaged zip archive ({error})") from None


def _read_sound_catalog(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """Members "NN_title.wav" of an OpenTTD sound catalog: entry NN's WAV bytes.

    Layout (OpenTTD's soundloader): a table of (uint32 offset, uint32 size) pairs whose first
    offset / 8 is the entry count (bit 31 flags the new format), then at each offset a length byte,
    the title, and ``size`` bytes of WAV.
    """
    data = path.read_bytes()
    try:
        count = (struct.unpack_from("<I", data, 0)[0] & 0x7FFFFFFF) // 8
        table = [struct.unpack_from("<II", data, 8 * i) for i in range(count)]
    except struct.error as error:
        raise ValueError(f"damaged sound catalog ({error})") from None
    found = {}
    for name in wanted:
        number = name.split("_", 1)[0]
        if not number.isdigit() or int(number) >= count:
            continue
        offset, size = table[int(number)]
        offset &= 0x7FFFFFFF
        start = offset + 1 + data[offset] if offset < len(data) else len(data)
        if start + size > len(data):
            raise ValueError(f"damaged sound catalog (entry {number} runs past the end)")
        found[name] = data[start : start + size]
    return found


def read_recording_bytes(row: CatalogRow, cache_dir: str | Path) -> bytes:
    """The raw bytes of a recording (a plain file or a container member): what the catalog md5 covers."""
    path = recording_path(row, cache_dir)
    fetch_hint = f"fetch it again with `edge-dac data fetch --packages {row.package} --cache {cache_dir}`"
    if not path.is_file():
        raise EdgeDacError(
            f"{row.package}: {path} is not in the cache {cache_dir}; "
            f"run `edge-dac data fetch --packages {row.package} --cache {cache_dir}`"
        )
    if row.member is None:
        return path.read_bytes()
    try:
        members = read_members(path, [row.member])
    except ValueError as error:
        raise EdgeDacError(f"{row.package}: {path}: {error}; {fetch_hint}") from None
    if row.member not in members:
        raise EdgeDacError(
            f"{row.package}: {path} has no member {row.member}; the package version differs from the "
            f"catalog's {row.version}; {fetch_hint}"
        )
    return members[row.member]


def read_recording(
    row: CatalogRow, cache_dir: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """A recording as mono float32 at ``sample_rate``, read from the fetch cache (or a source pack,
    ``edge_dac.data.pack``, where it holds the recording)."""
    name = f"{row.package}:{row.path}"
    packed = Path(cache_dir) / PACKED_DIR / f"{row.md5}{PACK_SUFFIX}"
    if packed.is_file():
        return load_audio(packed, sample_rate, max_seconds)
    if row.member is None and row.format != "wavpack":
        path = recording_path(row, cache_dir)
        if not path.is_file():
            read_recording_bytes(row, cache_dir)  # raises the "run edge-dac data fetch" error
        return load_audio(path, sample_rate, max_seconds)
    data = read_recording_bytes(row, cache_dir)
    if data[:4] == b"wvpk":
        return decode_audio(_unpack_wavpack(data, name), name, sample_rate, max_seconds)
    return decode_audio(data, name, sample_rate, max_seconds)


def _unpack_wavpack(data: bytes, name: str) -> bytes:
    """WavPack -> WAV bytes through ``wvunpack``: libsndfile cannot read WavPack (GrandOrgue samples)."""
    if shutil.which("wvunpack") is None:
        raise AudioError(f"{name}: is WavPack, which needs the wvunpack tool; run `apt-get install wavpack`")
    result = subprocess.run(["wvunpack", "-q", "-y", "-", "-o", "-"], input=data, capture_output=True)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{name}: wvunpack failed ({message[-1] if message else result.returncode})")
    return result.stdout


def _has_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _resolve_archive_glob(pattern_path: Path, member: str) -> Path | None:
    """The archive matching ``pattern_path`` that holds ``member``; the last one in name order wins,
    as in Quake-style games where later pk3 files override earlier ones."""
    archives = sorted(pattern_path.parent.glob(pattern_path.name))
    # Keyed on the matching files and their mtimes, so a re-fetch is noticed.
    key = tuple((str(a), a.stat().st_mtime_ns) for a in archives)
    return _archives_with_member(key).get(member) if archives else None


@functools.lru_cache(maxsize=16)
def _archives_with_member(archives: tuple[tuple[str, int], ...]) -> dict[str, Path]:
    owners: dict[str, Path] = {}
    for archive, _mtime in archives:
        try:
            with zipfile.ZipFile(archive) as zf:
                owners.update(dict.fromkeys(zf.namelist(), Path(archive)))
        except zipfile.BadZipFile:
            continue
    return owners
