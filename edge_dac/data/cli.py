"""``edge-dac data``: fetch the soundscape recordings (``fetch``) and build captioned scenes (``build``)."""

from __future__ import annotations

import argparse

try:  # written separately; the command is simply absent until it exists
    from edge_dac.data.build_cli import register_build
except ModuleNotFoundError as error:
    if error.name != "edge_dac.data.build_cli":
        raise
    register_build = None


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="fetch the soundscape recordings and build captioned scenes")
    data_subparsers = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    fetch = data_subparsers.add_parser(
        "fetch",
        help="download, unpack and verify the Debian packages listed in the soundscape catalog",
        description="Download (apt-get download, no root needed), unpack (dpkg-deb -x) and md5-verify the "
        "recordings of the soundscape catalog. Resumes: packages already verified are skipped.",
    )
    fetch.add_argument(
        "--packages",
        action="append",
        metavar="PKG[,PKG...]",
        help="only these packages (comma-separated or repeated); default: every package in the catalog",
    )
    fetch.add_argument("--small", action="store_true", help="only the small test set of packages (about 150 MB)")
    fetch.add_argument(
        "--from",
        dest="from_dir",
        metavar="DIR",
        help="take .deb files from DIR instead of downloading (no network)",
    )
    fetch.add_argument("--cache", metavar="DIR", help="cache directory (default: $EDGE_DAC_CACHE or ~/.cache/edge-dac)")
    fetch.add_argument("--catalog", metavar="CSV", help="catalog.csv (default: ../shared/soundscape/catalog.csv)")
    fetch.add_argument("--verify", action="store_true", help="re-check md5s of packages already in the cache")
    fetch.add_argument("--keep-debs", action="store_true", help="keep downloaded .deb files in CACHE/debs")
    fetch.set_defaults(func=run_fetch)

    pack = data_subparsers.add_parser(
        "pack",
        help="copy the recordings a training run mixes from into a small, self-contained cache (Ogg/Opus)",
        description="Decode the recordings of the chosen splits once (mono, 16 kHz, cropped) and store them as "
        "Ogg/Opus with their own catalog.csv: a cache directory of tens of MB instead of GBs, for a training "
        "machine that cannot fetch. Train from it with data.cache_dir: DIR and data.catalog: DIR/catalog.csv.",
    )
    pack.add_argument("--out", required=True, metavar="DIR", help="the pack directory (resumable)")
    pack.add_argument("--splits", default="train,val", help="comma-separated splits (default: train,val)")
    pack.add_argument("--packages", action="append", metavar="PKG[,PKG...]", help="default: every fetched package")
    pack.add_argument("--max-seconds", type=float, default=12.0, help="crop longer recordings (default: 12)")
    pack.add_argument(
        "--speech-per-speaker", type=int, default=12, help="utterances kept per speaker and split (default: 12)"
    )
    pack.add_argument("--cache", metavar="DIR", help="fetch cache (default: $EDGE_DAC_CACHE or ~/.cache/edge-dac)")
    pack.add_argument("--catalog", metavar="CSV", help="catalog.csv (default: ../shared/soundscape/catalog.csv)")
    pack.set_defaults(func=run_pack)

    if register_build is not None:
        register_build(data_subparsers)


def run_pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from loguru import logger

    from edge_dac.const import default_cache_dir
    from edge_dac.data.build import CorpusConfig, select_rows
    from edge_dac.data.pack import choose_rows, pack_sources

    packages = package_list(args.packages)
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    unknown = sorted(set(splits) - {"train", "val", "test"})
    if unknown:
        logger.error(f"--splits: unknown split {unknown[0]!r}; use train, val and/or test")
        return 2
    cache = Path(args.cache) if args.cache else default_cache_dir()
    rows = select_rows(CorpusConfig(packages=packages), cache, args.catalog)
    chosen = choose_rows(rows, splits, args.speech_per_speaker)
    report = pack_sources(chosen, cache, args.out, max_seconds=args.max_seconds)
    logger.info(report.summary())
    return 0


def package_list(groups: list[str] | None) -> list[str] | None:
    """``--packages a,b --packages c`` -> ["a", "b", "c"]; None when none were named."""
    return [p for group in groups or [] for p in group.split(",") if p.strip()] or None


def run_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_dac.const import default_cache_dir
    from edge_dac.data.catalog import load_catalog
    from edge_dac.data.fetch import SMALL_PACKAGES, fetch

    packages = package_list(args.packages)
    if args.small:
        packages = (packages or []) + list(SMALL_PACKAGES)
    cache = Path(args.cache) if args.cache else default_cache_dir()
    report = fetch(
        packages,
        cache,
        from_dir=args.from_dir,
        catalog=load_catalog(args.catalog),
        verify=args.verify,
        keep_debs=args.keep_debs,
    )
    print(report.summary())
    print(f"cache: {cache}")
    return 0 if report.ok else 1
