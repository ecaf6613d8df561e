"""``edge-dac caption FILE...``: caption audio files from the command line."""

from __future__ import annotations

import argparse
import json
import math
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    # The daemon's config holds the decoding defaults without importing torch (tests/test_defaults.py).
    from edge_dac.daemon.config import EngineConfig

    parser = subparsers.add_parser(
        "caption",
        help="caption audio files window by window",
        description="Caption audio files (WAV, FLAC, OGG, MP3; any rate and channel count). "
        "Long files are cut into windows; one line per window.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--model", metavar="DIR", help="checkpoint directory (default: the shipped model)")
    parser.add_argument(
        "--steps", type=int, default=None, help=f"denoising steps (DAC; default {EngineConfig().steps}, as the daemon)"
    )
    parser.add_argument(
        "--candidates", type=int, default=None, help="candidates per window (default 5; AR: beam size, default 1)"
    )
    parser.add_argument(
        "--event-guidance", type=float, default=None, metavar="G",
        help="how hard the event head steers the words (default 2, as the daemon; 0: off)",
    )
    parser.add_argument(
        "--backend", default="auto", help="auto (the fastest available), eager, onnxruntime, torch-compile, tensorrt"
    )
    parser.add_argument(
        "--precision", metavar="P", default=None,
        help="the engine's precision, as for edge-dac export and the daemon's engine.precision "
        "(e.g. int8 on onnxruntime; default: the backend's fp32)",
    )
    parser.add_argument("--window", type=float, default=None, metavar="S", help="window seconds (default: model's)")
    parser.add_argument("--hop", type=float, default=None, metavar="S", help="hop seconds (default: the window)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's starting noise (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the engine's choice)")
    parser.add_argument(
        "--batch", type=int, default=None, metavar="N",
        help="windows captioned together (default: 1 on a CPU, where larger batches only cost memory; 16 on a GPU)",
    )
    parser.add_argument(
        "--silence-dbfs", type=float, default=None, metavar="DB",
        help="windows quieter than this are not captioned but reported silent, like the daemon's gate "
        "(default -60; -inf captions everything)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per window and line")
    parser.set_defaults(func=run)


def _check_positive(name: str, value: float | None) -> None:
    from edge_dac.errors import EdgeDacError

    if value is not None and value <= 0:
        raise EdgeDacError(f"--{name} must be positive, got {value:g}")


def run(args: argparse.Namespace) -> int:
    from loguru import logger

    from edge_dac.caption import DEFAULT_BATCH, SILENCE_DBFS, iter_caption_file
    from edge_dac.engines import load_engine
    from edge_dac.errors import EdgeDacError
    from edge_dac.model.decoding import DecodingOptions
    from edge_dac.windows import gap_warning

    for name in ("steps", "candidates", "window", "hop", "threads", "batch"):
        _check_positive(name, getattr(args, name))
    if args.event_guidance is not None and not args.event_guidance >= 0:
        raise EdgeDacError(f"--event-guidance must be 0 or more, got {args.event_guidance:g}")
    engine = load_engine(
        args.model, backend=args.backend, threads=args.threads, seed=args.seed, precision=args.precision
    )
    if args.event_guidance is not None:
        engine.event_guidance = args.event_guidance
    model_seconds = engine.window_samples / engine.sample_rate
    if args.window and args.window > model_seconds:
        raise EdgeDacError(
            f"--window {args.window:g} is longer than the model's {model_seconds:g} s window; pass a shorter --window"
        )
    window_s = args.window or model_seconds
    if warning := gap_warning(window_s, args.hop or window_s, "--hop"):
        logger.warning(warning)
    defaults = DecodingOptions()
    candidates = args.candidates or (defaults.candidates if engine.captioner.dims.kind == "dac" else 1)
    # Batching buys little on a CPU (ONNX Runtime: the same time for 18 windows at batch 1 and 16) and
    # each window in a batch holds about 100 MB of activations; a GPU's throughput needs the batch.
    batch = args.batch or (1 if str(getattr(engine, "device", "cpu")).startswith("cpu") else DEFAULT_BATCH)
    gate = SILENCE_DBFS if args.silence_dbfs is None else args.silence_dbfs
    failures = 0
    for path in args.files:
        results = iter_caption_file(
            engine, path, steps=args.steps or defaults.steps, candidates=candidates,
            window_seconds=args.window, hop_seconds=args.hop, batch_size=batch,
            silence_dbfs=gate,
        )
        try:  # decoded and captioned as the file is read: lines come while a long file is still going
            for result in results:
                failures += _print(result, args.json, logger, gate)
                sys.stdout.flush()
        except EdgeDacError as error:  # one bad file must not stop the others
            logger.error(str(error))
            failures += 1
    return 1 if failures else 0


def _print(result, as_json: bool, logger, gate: float) -> int:
    """Print one window's line; 1 (and an error line instead) if its scores are not finite."""
    from edge_dac.caption import MIN_SECONDS

    scores = [candidate.score for candidate in result.candidates]
    if not all(math.isfinite(score) for score in scores):  # NaN is not JSON, and the text is garbage
        logger.error(
            f"{result.file} [{result.start:.2f} - {result.end:.2f}]: the model returned a non-finite score "
            f"({next(s for s in scores if not math.isfinite(s))}); its weights may be damaged (check --model)"
        )
        return 1
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False))
    else:
        text = result.caption
        if result.skipped == "silent":
            text = f"(silent: below {gate:g} dBFS; not captioned)"
        elif result.skipped == "too short":
            text = f"(too short: {result.end - result.start:.2f} s of audio, under {MIN_SECONDS:g} s; not captioned)"
        print(f"{result.file}  [{result.start:7.2f} - {result.end:7.2f}]  {text}")
    return 0
