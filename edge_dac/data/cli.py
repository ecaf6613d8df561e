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

    if register_build is not None:
        register_build(data_subparsers)


def run_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_dac.data.catalog import default_cache_dir, load_catalog
    from edge_dac.data.fetch import SMALL_PACKAGES, fetch

    packages = [p for group in args.packages or [] for p in group.split(",") if p.strip()] or None
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
