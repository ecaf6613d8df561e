"""Fetch the soundscape recordings: download the Debian packages, unpack them, verify every file.

For each package: ``apt-get download`` its .deb into ``CACHE/debs`` (no root needed, nothing is
installed) or take it from ``--from DIR``, unpack it with ``dpkg-deb -x`` into ``CACHE/root/PKG``,
then check the md5 of every catalog file from it (for an ``ARCHIVE!MEMBER`` or ``SOUNDS.cat#MEMBER``
row, the md5 of the member's own bytes, which is what the catalog records).

Fetching resumes: a package that verified writes ``CACHE/markers/PKG.json`` holding the size and
mtime of each verified file; the next run skips it after a stat() of those files, and re-checks
md5s (and re-fetches on a mismatch) only when one has changed, or always with ``verify=True``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger
from tqdm import tqdm

from edge_dac.data.catalog import CatalogRow, load_catalog, package_root, read_members, recording_path
from edge_dac.errors import EdgeDacError

# The small set used by tests (about 150 MB of packages, 1,069 rows, 127 labels).
SMALL_PACKAGES = (
    "asterisk-core-sounds-en-wav",
    "openttd-opensfx",
    "lincity-ng-data",
    "scorched3d-data",
    "ufoai-sound",
    "bucklespring-data",
    "sound-theme-freedesktop",
    "lugaru-data",
    "freeciv-data",
)
MARKER_VERSION = 1
_EXAMPLES = 5


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)  # downloaded (or taken from --from) and unpacked
    skipped: list[str] = field(default_factory=list)  # already in the cache and verified
    files_verified: int = 0
    missing: list[str] = field(default_factory=list)  # "package:path" of catalog files not in the package
    mismatched: list[str] = field(default_factory=list)  # "package:path" whose md5 differs from the catalog
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        lines = [
            f"packages: {len(self.fetched)} fetched, {len(self.skipped)} already in the cache; "
            f"files: {self.files_verified} verified, {len(self.missing)} missing, "
            f"{len(self.mismatched)} md5 mismatch ({self.seconds:.1f} s)"
        ]
        for name, items in (("missing", self.missing), ("md5 mismatch", self.mismatched)):
            if items:
                more = f" (and {len(items) - _EXAMPLES} more)" if len(items) > _EXAMPLES else ""
                lines.append(f"{name}: {', '.join(items[:_EXAMPLES])}{more}")
        return "\n".join(lines)


@dataclass
class _Check:
    """Outcome of checking one package's files against the catalog."""

    verified: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    stats: dict[str, list[int]] = field(default_factory=dict)  # file relative to the package root -> [size, mtime]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched


def fetch(
    packages: Sequence[str] | None,
    cache_dir: str | Path,
    from_dir: str | Path | None = None,
    catalog: Sequence[CatalogRow] | str | Path | None = None,
    progress: bool = True,
    verify: bool = False,
    keep_debs: bool = False,
) -> FetchReport:
    """Make every catalog recording of ``packages`` (default: all) available under ``cache_dir``.

    ``from_dir`` takes .deb files from a directory instead of the network; with ``packages`` None
    it then fetches the catalog packages that have a .deb there. ``verify`` re-checks md5s of
    packages that are already in the cache.
    """
    started = time.monotonic()
    rows = list(catalog) if isinstance(catalog, Sequence) and not isinstance(catalog, str) else load_catalog(catalog)
    by_package: dict[str, list[CatalogRow]] = defaultdict(list)
    for row in rows:
        by_package[row.package].append(row)
    cache_dir = Path(cache_dir).expanduser()
    from_dir = Path(from_dir).expanduser() if from_dir is not None else None
    if from_dir is not None and not from_dir.is_dir():
        raise EdgeDacError(f"--from {from_dir}: not a directory; pass the directory holding the .deb files")
    packages = _select_packages(packages, by_package, from_dir)

    report = FetchReport()
    with _locked(cache_dir):
        _fetch_packages(packages, by_package, cache_dir, from_dir, report, progress, verify, keep_debs)
    report.seconds = time.monotonic() - started
    return report


@contextlib.contextmanager
def _locked(cache_dir: Path):
    """One fetch per cache at a time: two test sessions or shells sharing a cache would race on unpacking."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(f"waiting for another edge-dac fetch into {cache_dir} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fetch_packages(
    packages: list[str],
    by_package: dict[str, list[CatalogRow]],
    cache_dir: Path,
    from_dir: Path | None,
    report: FetchReport,
    progress: bool,
    verify: bool,
    keep_debs: bool,
) -> None:
    with tqdm(packages, desc="fetch", unit="pkg", disable=not progress) as bar:
        for package in bar:
            bar.set_postfix_str(package)
            _fetch_package(package, by_package[package], cache_dir, from_dir, report, verify, keep_debs)


def _fetch_package(
    package: str,
    package_rows: list[CatalogRow],
    cache_dir: Path,
    from_dir: Path | None,
    report: FetchReport,
    verify: bool,
    keep_debs: bool,
) -> None:
    """Skip the package if it is in the cache and verified, else unpack its .deb and verify it."""
    if _is_done(package, package_rows, cache_dir, verify):
        report.skipped.append(package)
        report.files_verified += len(package_rows)
        return
    deb = _find_deb(package, package_rows[0].version, from_dir, cache_dir)
    if deb is None:
        deb = download_deb(package, package_rows[0].version, cache_dir / "debs")
    _unpack(deb, package_root(package, cache_dir), ours=deb.parent == cache_dir / "debs")
    check = _check_files(package_rows, cache_dir)
    report.fetched.append(package)
    report.files_verified += check.verified
    report.missing += check.missing
    report.mismatched += check.mismatched
    if check.ok:
        _write_marker(package, package_rows, cache_dir, check)
        if not keep_debs and from_dir is None:
            deb.unlink(missing_ok=True)  # the unpacked tree and its marker are all a rerun needs
    else:
        logger.warning(
            f"{package}: {len(check.missing)} files missing, {len(check.mismatched)} md5 mismatches "
            f"after unpacking {deb.name}; the package version probably differs from the catalog's "
            f"{package_rows[0].version}"
        )


def _select_packages(
    packages: Sequence[str] | None, by_package: dict[str, list[CatalogRow]], from_dir: Path | None
) -> list[str]:
    if packages is None:
        if from_dir is None:
            return sorted(by_package)
        found = sorted(p for p in by_package if any(from_dir.glob(f"{p}_*.deb")))
        if not found:
            raise EdgeDacError(
                f"--from {from_dir}: no .deb file of a catalog package there (expected names like "
                f"{sorted(by_package)[0]}_VERSION_all.deb); download them with `apt-get download PKG`"
            )
        return found
    packages = list(dict.fromkeys(p.strip() for p in packages if p.strip()))
    unknown = [p for p in packages if p not in by_package]
    if unknown:
        examples = ", ".join(sorted(by_package)[:4])
        raise EdgeDacError(
            f"unknown package{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: not in the soundscape "
            f"catalog; valid names include {examples} ({len(by_package)} in all, see its package column)"
        )
    if from_dir is not None:
        absent = [p for p in packages if not any(from_dir.glob(f"{p}_*.deb"))]
        if absent:
            raise EdgeDacError(
                f"--from {from_dir}: no .deb for {', '.join(absent)}; add it there (`apt-get download PKG`) "
                f"or drop --from to download"
            )
    return packages


def _marker_path(package: str, cache_dir: Path) -> Path:
    return cache_dir / "markers" / f"{package}.json"


def _catalog_digest(rows: Sequence[CatalogRow]) -> str:
    """Fingerprint of the catalog rows of a package, so a changed catalog invalidates the marker."""
    text = "\n".join(sorted(f"{r.version}\t{r.path}\t{r.md5}" for r in rows))
    return hashlib.md5(text.encode()).hexdigest()


def _is_done(package: str, rows: Sequence[CatalogRow], cache_dir: Path, verify: bool) -> bool:
    """True when the package is unpacked and verified: by its marker and a stat() of its files, or by md5."""
    root = package_root(package, cache_dir)
    if not root.is_dir():
        return False
    marker = _read_marker(package, cache_dir)
    if marker and marker.get("catalog_digest") == _catalog_digest(rows) and not verify:
        changed = [rel for rel, stat in marker["files"].items() if _stat(root / rel) != stat]
        if not changed:
            return True
        logger.warning(f"{package}: {len(changed)} files changed since they were verified ({changed[0]}); checking")
    check = _check_files(rows, cache_dir)
    if check.ok:
        _write_marker(package, rows, cache_dir, check)
        return True
    bad = (check.missing + check.mismatched)[0]
    logger.warning(
        f"{package}: {len(check.missing)} files missing, {len(check.mismatched)} md5 mismatches in the "
        f"cache (first: {bad}); fetching it again"
    )
    return False


def _read_marker(package: str, cache_dir: Path) -> dict | None:
    try:
        marker = json.loads(_marker_path(package, cache_dir).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("marker_version") == MARKER_VERSION else None


def _write_marker(package: str, rows: Sequence[CatalogRow], cache_dir: Path, check: _Check) -> None:
    marker = {
        "marker_version": MARKER_VERSION,
        "package": package,
        "version": rows[0].version,
        "catalog_digest": _catalog_digest(rows),
        "files": check.stats,
    }
    path = _marker_path(package, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=1))
    tmp.replace(path)


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _check_files(rows: Sequence[CatalogRow], cache_dir: Path) -> _Check:
    """md5 of every row's bytes against the catalog; each archive is opened once."""
    check = _Check()
    by_file: dict[Path, list[CatalogRow]] = defaultdict(list)
    for row in rows:
        by_file[recording_path(row, cache_dir)].append(row)
    root = package_root(rows[0].package, cache_dir)
    for path, file_rows in by_file.items():
        if not path.is_file():
            check.missing += [f"{r.package}:{r.path}" for r in file_rows]
            continue
        digests = _member_md5s(path, file_rows) if file_rows[0].member is not None else {None: _md5_file(path)}
        good = 0
        for row in file_rows:
            digest = digests.get(row.member)
            if digest is None:
                check.missing.append(f"{row.package}:{row.path}")
            elif digest != row.md5:
                check.mismatched.append(f"{row.package}:{row.path}")
            else:
                good += 1
        check.verified += good
        if good == len(file_rows):
            check.stats[str(path.relative_to(root))] = _stat(path)
    return check


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _member_md5s(path: Path, rows: Sequence[CatalogRow]) -> dict[str | None, str]:
    """md5 of the bytes of each wanted member; absent members are left out."""
    try:
        members = read_members(path, [r.member for r in rows])
    except ValueError:  # a damaged container: every member counts as mismatched
        return {r.member: "damaged" for r in rows}
    return {name: hashlib.md5(data).hexdigest() for name, data in members.items()}


def _find_deb(package: str, version: str, from_dir: Path | None, cache_dir: Path) -> Path | None:
    """A .deb of the package in ``from_dir`` or the download cache; the catalogued version first."""
    for folder in (from_dir, cache_dir / "debs"):
        if folder is None or not folder.is_dir():
            continue
        debs = sorted(folder.glob(f"{package}_*.deb"))
        exact = [d for d in debs if d.name.startswith(f"{package}_{version.replace(':', '%3a')}_")]
        if exact or debs:
            return (exact or debs)[-1]
    return None


def download_deb(package: str, version: str, debs_dir: Path) -> Path:
    """``apt-get download`` the catalogued version, else what apt offers (md5 checks catch a difference)."""
    if shutil.which("apt-get") is None:
        raise EdgeDacError(
            "apt-get not found: fetching needs a Debian/Ubuntu machine; elsewhere download the .deb files "
            "on one and pass --from DIR"
        )
    debs_dir.mkdir(parents=True, exist_ok=True)
    for spec in (f"{package}={version}", package):
        result = subprocess.run(["apt-get", "download", "-q", spec], cwd=debs_dir, capture_output=True, text=True)
        debs = sorted(debs_dir.glob(f"{package}_*.deb"))
        if result.returncode == 0 and debs:
            if spec == package:
                logger.warning(f"{package}: version {version} is not in the apt sources; using {debs[-1].name}")
            return debs[-1]
    errors = [line for line in result.stderr.splitlines() if line.startswith("E:")]
    reason = errors[-1][2:].strip() if errors else result.stderr.strip() or f"exit code {result.returncode}"
    if "Unable to locate package" in reason or "has no installation candidate" in reason:
        if _apt_lists_empty():
            raise EdgeDacError(
                f"apt-get download {package} failed: the apt package lists are empty; "
                f"run `sudo apt-get update` once, then fetch again"
            )
        raise EdgeDacError(
            f"apt-get download {package} failed ({reason}); the catalog needs Debian 12 (bookworm) "
            f"sources (main); run `sudo apt-get update` or pass --from DIR with the .deb files"
        )
    raise EdgeDacError(f"apt-get download {package} failed ({reason}); check the network and apt sources")


def _apt_lists_empty() -> bool:
    """True on a fresh machine (or container) where `apt-get update` never ran."""
    result = subprocess.run(["apt-config", "shell", "LISTS", "Dir::State::Lists/d"], capture_output=True, text=True)
    lists = result.stdout.partition("=")[2].strip().strip("'") or "/var/lib/apt/lists"
    return not any(Path(lists).glob("*_Packages*"))


def _unpack(deb: Path, root: Path, ours: bool) -> None:
    """Unpack into a temporary directory, then swap it in, so an interrupted fetch leaves no half tree.

    A damaged .deb we downloaded (``ours``) is deleted so the next run downloads it again."""
    if shutil.which("dpkg-deb") is None:
        raise EdgeDacError("dpkg-deb not found; install dpkg (`apt-get install dpkg`)")
    tmp = root.with_name(f".{root.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        if ours:
            deb.unlink(missing_ok=True)
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.returncode}"
        raise EdgeDacError(f"{deb}: cannot unpack ({reason}); the file is damaged, fetch it again")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
