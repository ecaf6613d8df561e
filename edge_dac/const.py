"""Package paths, environment variables and default folders: the one place that knows where things live.

Every other module imports these rather than computing its own ``Path(__file__)``; this module imports
nothing from ``edge_dac`` but the errors, so any layer (model, engines, daemon, data) may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_dac.errors import CheckpointError

# --- inside the package -------------------------------------------------------------------------------
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the source checkout (only meaningful when running from one)
ASSETS_DIR = PACKAGE_DIR / "assets"
DEMO_DIR = ASSETS_DIR / "demo"  # the bundled demo scenes (*.flac, manifest.jsonl)
DEFAULT_MODEL_DIR = ASSETS_DIR / "model"  # the model shipped inside the package
LEXICON_PATH = PACKAGE_DIR / "lexicon.yaml"
CAPTION_PAIRS_PATH = PACKAGE_DIR / "caption_pairs.txt"  # word pairs of the caption writer (scripts/caption_pairs.py)
CAPTION_TRIPLES_PATH = PACKAGE_DIR / "caption_triples.txt.gz"  # its word triples (the same script)

# --- environment variables ----------------------------------------------------------------------------
CATALOG_ENV = "EDGE_DAC_CATALOG"  # the soundscape catalog.csv
CACHE_ENV = "EDGE_DAC_CACHE"  # the fetch cache (unpacked Debian packages, source packs)
ENGINES_ENV = "EDGE_DAC_ENGINES"  # built engines
SYSTEMD_CACHE_ENV = "CACHE_DIRECTORY"  # set by systemd for CacheDirectory=; may hold several, ':'-separated

# The soundscape catalog beside the repository (or the current directory) when $EDGE_DAC_CATALOG is unset.
RELATIVE_CATALOG = Path("..") / "shared" / "soundscape" / "catalog.csv"


def default_model_dir() -> Path:
    """The model shipped inside the package; a clear error if this build has none."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise CheckpointError(
            f"no default model is shipped in this build ({DEFAULT_MODEL_DIR}); pass --model DIR "
            "(a checkpoint written by edge-dac train)"
        )
    return DEFAULT_MODEL_DIR


def default_cache_dir() -> Path:
    """The fetch cache: ``$EDGE_DAC_CACHE``, else ``$XDG_CACHE_HOME/edge-dac``, else ``~/.cache/edge-dac``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge-dac"


def default_engines_dir() -> Path:
    """``$EDGE_DAC_ENGINES``, else ``$CACHE_DIRECTORY/engines`` (systemd ``CacheDirectory=``), else ~/.cache."""
    if os.environ.get(ENGINES_ENV):
        return Path(os.environ[ENGINES_ENV])
    if os.environ.get(SYSTEMD_CACHE_ENV):
        return Path(os.environ[SYSTEMD_CACHE_ENV].split(":")[0]) / "engines"
    return Path.home() / ".cache" / "edge-dac" / "engines"
