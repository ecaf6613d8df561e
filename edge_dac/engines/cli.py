"""``edge-dac export``: build a compiled engine for a checkpoint ahead of time (else the first start builds it)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="build a compiled engine (onnxruntime, torch-compile, tensorrt) for a model",
        description="Build the engine for a model and backend into the engines folder, verify that it loads, "
        "and print where it is. An engine that is already built and intact is reused; one built from other "
        "inputs (weights, versions, GPU) is never used: a new one is built.",
    )
    parser.add_argument("--model", metavar="DIR", help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--backend", required=True, metavar="B", help="onnxruntime, torch-compile or tensorrt")
    parser.add_argument(
        "--precision", metavar="P", help="fp32 | int8 (onnxruntime), fp32 (torch-compile), fp16 | fp32 (tensorrt)"
    )
    parser.add_argument("--max-batch", metavar="N", help="tensorrt: largest batch of windows (default 32)")
    parser.add_argument(
        "--engines", metavar="DIR", help="engines folder (default: $EDGE_DAC_ENGINES, $CACHE_DIRECTORY/engines "
        "or ~/.cache/edge-dac/engines)"
    )
    parser.add_argument("--device", metavar="D", help="cpu or cuda[:N] (default: the backend's own: cuda for tensorrt)")
    parser.add_argument("--rebuild", action="store_true", help="build again even when a valid engine exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from edge_dac.const import default_model_dir
    from edge_dac.engines.select import export_engine
    from edge_dac.engines.store import read_manifest
    from edge_dac.errors import EdgeDacError

    max_batch = None
    if args.max_batch is not None:
        try:
            max_batch = int(args.max_batch)
        except ValueError:
            raise EdgeDacError(f"--max-batch must be a whole number, got {args.max_batch!r}") from None
    if args.precision is not None and args.precision not in ("fp16", "fp32", "int8"):
        raise EdgeDacError(f"--precision must be fp16, fp32 or int8, got {args.precision!r}")
    if args.device is not None and args.device.split(":")[0] not in ("cpu", "cuda"):
        raise EdgeDacError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    engine = export_engine(
        args.model or default_model_dir(), args.backend, precision=args.precision, max_batch=max_batch,
        engines_dir=args.engines, device=args.device, rebuild=args.rebuild,
    )
    engine.warm_up()  # one real pass: the engine not only loads, it runs
    assert engine.folder is not None
    manifest = read_manifest(engine.folder)
    summary = {
        "engine": str(engine.folder),
        "model": engine.model_id,
        "backend": engine.backend,
        "precision": engine.precision,
        "batch": manifest["key_fields"]["batch"],
        "key": manifest["key"],
        "built": manifest["built"]["at"],
        **({"quality": manifest["quality"]} if "quality" in manifest else {}),
    }
    print(json.dumps(summary, indent=2))
    return 0
