"""Shared fixtures. The soundscape ones fetch real Debian packages once into a persistent cache
(``$EDGE_DAC_CACHE`` or ``~/.cache/edge-dac``), so reruns and CI jobs with a cache reuse them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edge_dac.const import default_cache_dir
from edge_dac.data.catalog import CatalogRow, load_catalog
from edge_dac.data.fetch import SMALL_PACKAGES, FetchReport, download_deb, fetch
from edge_dac.errors import EdgeDacError

# Small packages whose .deb files the `--from DIR` tests unpack: plain files (.oga) and an OpenTTD .cat.
SOUNDSCAPE_DEB_PACKAGES = ("sound-theme-freedesktop", "openttd-opensfx")


def _with_apt_lists(action):
    """Run ``action``; on a fresh machine whose apt lists are empty, run `apt-get update` once (as root) and retry."""
    try:
        return action()
    except EdgeDacError as error:
        if "apt-get update" not in str(error) or os.geteuid() != 0:
            raise
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        return action()


@pytest.fixture(scope="session")
def soundscape_cache() -> Path:
    """A cache holding the small set of soundscape packages, fetched and md5-verified (about 180 MB)."""
    cache = default_cache_dir()
    report: FetchReport = _with_apt_lists(lambda: fetch(list(SMALL_PACKAGES), cache, progress=False))
    assert report.ok, report.summary()
    return cache


@pytest.fixture(scope="session")
def catalog_rows() -> list[CatalogRow]:
    """Catalog rows of the small set of packages."""
    return [row for row in load_catalog() if row.package in SMALL_PACKAGES]


@pytest.fixture(scope="session")
def soundscape_debs() -> Path:
    """A directory holding the .deb files of sound-theme-freedesktop and openttd-opensfx (downloaded once,
    kept in the cache)."""
    debs = default_cache_dir() / "test-debs"
    versions = {row.package: row.version for row in load_catalog()}
    for package in SOUNDSCAPE_DEB_PACKAGES:
        if not any(debs.glob(f"{package}_*.deb")):
            _with_apt_lists(lambda package=package: download_deb(package, versions[package], debs))
    return debs


@pytest.fixture(scope="session")
def demo_trainer():
    """scripts/train_demo_model.py as a module: ``fit_clips`` (a captioner memorising clips held in
    memory) and ``main`` (the demo model)."""
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo_model(demo_trainer, tmp_path_factory) -> Path:
    """A throwaway DAC model trained once per session on the 5 bundled demo scenes
    (scripts/train_demo_model.py, 1-4 min on 2 cores). It memorises their captions: enough to check
    that the right words come out of a real pipeline, not a real captioner. ``$EDGE_DAC_DEMO_MODEL``
    names a folder to reuse (trained into on first use), which saves the training on reruns."""
    out = Path(os.environ.get("EDGE_DAC_DEMO_MODEL") or tmp_path_factory.mktemp("demo-model"))
    demo_trainer.main(str(out), progress=False)
    return out
