"""Built engines on disk: one folder per engine, named by a hash of everything that built it.

``<engines>/<model>-<backend>-<precision>-<key>/`` holds the engine files and ``manifest.json``
(what built it, each file's sha256). The key hashes the model weights and dims, the backend,
precision, device, batch range, the versions of torch and the backend runtime, and for GPUs the
card's name and compute capability. So a changed input never finds the old folder: it builds a new
one. A folder whose manifest does not match its inputs, or whose files fail their checksums
(a truncated copy, a full disk during the build), is rebuilt with a warning, never used.

Builds go to a temporary folder first and are renamed into place when complete: a build killed
half way leaves nothing that looks like an engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from edge_dac import __version__
from edge_dac.errors import EdgeDacError

MANIFEST = "manifest.json"
FORMAT = "edge-dac-engine"
FORMAT_VERSION = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def key_of(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _without_batch(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if name != "batch"}


def check_folder(folder: Path, fields: dict[str, Any]) -> str | None:
    """Why ``folder`` cannot be used as the engine for ``fields``; None when it can."""
    path = folder / MANIFEST
    if not path.is_file():
        return "missing"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return f"unreadable manifest ({error})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "not an edge-dac engine manifest"
    if manifest.get("key_fields") != fields or manifest.get("key") != key_of(fields):
        return "built for other inputs (cache key mismatch)"
    for name, expected in (manifest.get("files") or {}).items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected.get("bytes") or file_sha256(file) != expected.get("sha256"):
            return f"{name} is corrupt (checksum mismatch)"
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"


def obtain(
    root: Path,
    label: str,
    fields: dict[str, Any],
    build: Callable[[Path], dict[str, Any]],
    any_batch: bool = False,
    rebuild: bool = False,
) -> Path:
    """The folder of a valid engine for ``fields``: reused when one exists, else built by ``build(folder)``.

    ``build`` writes the engine files into the folder it is given and returns extra manifest
    entries (e.g. a quality check). ``any_batch``: an existing engine that differs only in its batch
    range is fine (the caller did not ask for one; the largest is taken).
    """
    key = key_of(fields)
    folder = root / f"{_safe(label)}-{key}"
    problem = "rebuild requested" if rebuild else check_folder(folder, fields)
    if problem is None:
        return folder
    if any_batch and not rebuild:
        compatible = []
        for manifest_path in root.glob(f"*/{MANIFEST}"):
            try:
                other = json.loads(manifest_path.read_text()).get("key_fields") or {}
            except (OSError, json.JSONDecodeError):
                continue
            if _without_batch(other) == _without_batch(fields) and check_folder(manifest_path.parent, other) is None:
                compatible.append((other.get("batch") or [1, 0])[1] or 0, manifest_path.parent)
        if compatible:
            return max(compatible)[1]
    if problem not in ("missing", "rebuild requested"):
        logger.warning(f"engine {folder}: {problem}; rebuilding it")
    return _build(root, folder, key, fields, build)


def _build(root: Path, folder: Path, key: str, fields: dict[str, Any], build: Callable[[Path], dict]) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgeDacError(
            f"cannot create the engines folder {root} ({error.strerror}); set EDGE_DAC_ENGINES or pass --engines DIR"
        ) from None
    staging = root / f".building-{key}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = time.perf_counter()
    try:
        extra = build(staging)
        files = {
            str(path.relative_to(staging)): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(staging.iterdir())
            if path.is_file()
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "key": key,
            "key_fields": fields,
            "built": {
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.perf_counter() - started, 1),
                "edge_dac": __version__,
            },
            "files": files,
            **extra,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
