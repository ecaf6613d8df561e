"""``edge-dac data build``: mix the captioned soundscape corpus from fetched recordings."""

from __future__ import annotations

import argparse


def register_build(data_subparsers: argparse._SubParsersAction) -> None:
    build = data_subparsers.add_parser(
        "build",
        help="mix captioned 10 s soundscapes (train/val/test) from the fetched recordings",
        description="Mix scenes from the recordings fetched by `edge-dac data fetch` and write audio clips, "
        "manifest.jsonl and AudioCaps-style CSVs. Same config and seed -> the same corpus.",
    )
    build.add_argument(
        "--config", metavar="YAML", help="corpus config (default: built-in defaults, as in configs/corpus.yaml)"
    )
    build.add_argument("--out", required=True, metavar="DIR", help="output directory")
    build.add_argument(
        "--clips", type=int, metavar="N", help="total clips, shared out in the config's split proportions"
    )
    build.add_argument("--seed", type=int, metavar="S", help="corpus seed (overrides the config's)")
    build.add_argument("--cache", metavar="DIR", help="fetch cache (default: $EDGE_DAC_CACHE or ~/.cache/edge-dac)")
    build.add_argument("--catalog", metavar="CSV", help="catalog.csv (default: ../shared/soundscape/catalog.csv)")
    build.add_argument("--packages", metavar="PKG[,PKG...]", help="only recordings of these packages")
    build.add_argument("--splits", metavar="SPLIT[,SPLIT...]", help="only these splits (e.g. test)")
    build.add_argument("--flat", action="store_true", help="write audio next to manifest.jsonl, not in audio/SPLIT/")
    build.add_argument("--workers", type=int, metavar="N", help="worker processes (default: up to 2 cores)")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_dac.const import default_cache_dir
    from edge_dac.data.build import build_corpus, default_workers, load_corpus_config
    from edge_dac.errors import ConfigError

    config = load_corpus_config(args.config)
    if args.seed is not None:
        if args.seed < 0:
            raise ConfigError(f"--seed {args.seed}: must be >= 0")
        config = config.model_copy(update={"seed": args.seed})
    if args.packages:
        config = config.model_copy(update={"packages": [p.strip() for p in args.packages.split(",") if p.strip()]})
    if args.splits:
        config = config.only_splits([s.strip() for s in args.splits.split(",") if s.strip()])
    if args.clips is not None:
        if args.clips < 1:
            raise ConfigError(f"--clips {args.clips}: must be at least 1")
        config = config.with_total(args.clips)
    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    cache = Path(args.cache) if args.cache else default_cache_dir()
    report = build_corpus(config, args.out, cache, workers=workers, catalog=args.catalog, flat=args.flat)
    print(report.summary())
    return 0
