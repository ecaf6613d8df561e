"""Corpus build speed: mix N clips with `build_corpus` and project the time and disk size of 20,000.

    python bench/corpus_build.py [--clips 2000] [--workers 2] [--format flac] [--packages a,b] [--out DIR]

Uses the packages fetched into the cache (default ~/.cache/edge-dac) unless --packages is given.
The target is 20,000 clips in under 15 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edge_dac.const import default_cache_dir
from edge_dac.data.build import CorpusConfig, build_corpus, fetched_packages, select_rows
from edge_dac.data.mixer import SceneMixer

TARGET_CLIPS = 20_000
TARGET_MINUTES = 15
ON_THE_FLY_SCENES = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", choices=["flac", "wav"], default="flac")
    parser.add_argument("--packages", help="comma-separated packages (default: every fetched package)")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, help="keep the clips here (default: a temporary directory)")
    args = parser.parse_args()

    cache = args.cache or default_cache_dir()
    packages = args.packages.split(",") if args.packages else sorted(fetched_packages(cache))
    config = CorpusConfig(format=args.format, packages=packages).with_total(args.clips)
    rows = select_rows(config, cache)
    print(f"{len(packages)} packages, {len(rows)} catalog rows, {args.clips} clips, {args.workers} workers")
    with tempfile.TemporaryDirectory() as scratch:
        report = build_corpus(config, args.out or scratch, cache, workers=args.workers)
    rate = sum(report.clips.values()) / report.seconds
    per_clip = report.bytes / sum(report.clips.values())
    projected_min = TARGET_CLIPS / rate / 60
    print(report.summary())
    print(f"clips/s: {rate:.1f}")
    print(f"projected for {TARGET_CLIPS} clips: {projected_min:.1f} min "
          f"({'within' if projected_min < TARGET_MINUTES else 'over'} the {TARGET_MINUTES} min target), "
          f"{per_clip * TARGET_CLIPS / 1e9:.2f} GB on disk ({per_clip / 1e3:.0f} kB per clip)")

    # On-the-fly mixing (a training dataset): sources preloaded, one process, no file writing.
    mixer = SceneMixer(rows, cache, config.scene, "train")
    start = time.perf_counter()
    usable = mixer.preload()
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    for seed in range(ON_THE_FLY_SCENES):
        mixer.mix(seed)
    rate = ON_THE_FLY_SCENES / (time.perf_counter() - start)
    print(f"on-the-fly mixing: {rate:.0f} scenes/s per process after preloading {usable} train sources "
          f"in {loaded:.1f} s")


if __name__ == "__main__":
    main()
