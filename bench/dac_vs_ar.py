"""DAC against its autoregressive twin: quality, diversity and speed on the same clips, same machine, 1 thread.

    python bench/dac_vs_ar.py --dac edge_dac/assets/model --ar models/ar-tiny --data corpus/manifest.jsonl --split test
    python bench/dac_vs_ar.py --limit 20          # random tiny models on the bundled demo scenes

Systems: DAC at 1, 2, 4 and 8 denoising steps with K=1 and K=5 candidates; AR greedy and AR beam 3
(its 3 beams are its candidates). Quality scores each system's best candidate; diversity looks at the
best captions over the whole set (Distinct, MTLD, vocabulary) and within a clip's candidates
(self-BLEU); speed is the whole pipeline (waveform in, ranked captions out) on one torch thread.
The last table holds the ratios behind the issue's targets.

Without --dac/--ar, random models of the tiny dims (width 192, 4+4 layers, 10 s windows) are built
with a tokenizer trained on the manifest's captions: the numbers then only test the table, and the
output says so. Checkpoints whose config.json metadata says ``untrained`` are flagged the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from edge_dac.data.datasets import load_manifest  # noqa: E402
from edge_dac.engines import load_engine  # noqa: E402
from edge_dac.errors import EdgeDacError  # noqa: E402
from edge_dac.evaluation.evaluate import (  # noqa: E402
    CachedEmbedder,
    caption_function,
    caption_windows,
    decoding_options,
    environment,
    load_windows,
    one_thread_engine,
    score_clips,
    select_items,
)
from edge_dac.evaluation.report import fmt, table  # noqa: E402
from edge_dac.evaluation.speed import measure_speed  # noqa: E402
from edge_dac.lexicon import load_lexicon  # noqa: E402
from edge_dac.model import Captioner, ModelDims, save_captioner, train_tokenizer  # noqa: E402

DEMO_MANIFEST = ROOT / "edge_dac" / "assets" / "demo" / "manifest.jsonl"
DAC_STEPS = (1, 2, 4, 8)
DAC_CANDIDATES = (1, 5)
AR_SYSTEMS = (("AR greedy", 1, 1), ("AR beam 3", 3, 3))  # (name, beam, candidates)
TARGETS = {"aps_b1": 3.0, "aps_b32": 5.0, "k5_cost": 1.5, "diversity": 1.3}


def random_models(captions: list[str], folder: Path) -> tuple[Path, Path]:
    """Untrained DAC and AR models of the tiny dims sharing one tokenizer, saved under ``folder``."""
    tokenizer = train_tokenizer(captions, vocab_size=1000)
    paths = []
    for kind in ("dac", "ar"):
        torch.manual_seed(0)
        dims = ModelDims(
            kind=kind, vocab_size=len(tokenizer), max_audio_seconds=10.0, encoder_width=192, decoder_width=192,
            encoder_layers=4, decoder_layers=4, max_caption_tokens=24, embedding_dim=64,
        )
        paths.append(save_captioner(Captioner(dims, tokenizer).eval(), folder / f"random-{kind}",
                                    metadata={"untrained": True}))
    return paths[0], paths[1]


def is_untrained(model_dir: Path) -> bool:
    return bool(json.loads((model_dir / "config.json").read_text()).get("metadata", {}).get("untrained"))


def systems(dac, ar) -> list[dict]:
    """Every system of the table: name, engine, decoding options."""
    rows = []
    for steps in DAC_STEPS:
        for k in DAC_CANDIDATES:
            rows.append({"name": f"DAC {steps} steps K={k}", "kind": "dac", "steps": steps, "candidates": k,
                         "engine": dac, "options": decoding_options("dac", steps, k)})
    for name, beam, k in AR_SYSTEMS:
        rows.append({"name": name, "kind": "ar", "steps": None, "candidates": k, "engine": ar,
                     "options": decoding_options("ar", 1, k, beam=beam)})
    return rows


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def mark(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "—"
    met = value >= target if higher_is_better else value <= target
    return f"{value:.2f} {'✓' if met else '✗'}"


def render(results: list[dict], header: list[str]) -> str:
    by_name = {r["name"]: r for r in results}
    quality = [
        (r["name"], r["metrics"]["bleu_4"], r["metrics"].get("meteor"), r["metrics"]["rouge_l"],
         r["metrics"]["cider_d"], r["metrics"].get("sbert_max"), r["metrics"].get("event_f1"))
        for r in results
    ]
    diversity = [
        (r["name"], r["metrics"]["corpus_distinct_1"], r["metrics"]["corpus_distinct_2"], r["metrics"]["corpus_mtld"],
         r["metrics"]["vocab_size"], r["metrics"]["distinct_1"], r["metrics"]["self_bleu"])
        for r in results
    ]
    speed = [(r["name"], r["aps_b1"], r["tps_b1"], r["aps_b32"], r["tps_b32"]) for r in results]
    greedy = by_name["AR greedy"]
    targets = []
    for steps in DAC_STEPS:
        k1, k5 = by_name[f"DAC {steps} steps K=1"], by_name[f"DAC {steps} steps K=5"]

        def pair(key: str, target: float, higher: bool = True, k1=k1, k5=k5) -> str:
            return " / ".join(mark(ratio(row[key], greedy[key]), target, higher) for row in (k1, k5))

        def metric_pair(key: str, k1=k1, k5=k5) -> str:
            return " / ".join(
                mark(ratio(row["metrics"][key], greedy["metrics"][key]), TARGETS["diversity"]) for row in (k1, k5)
            )

        targets.append((
            steps,
            pair("aps_b1", TARGETS["aps_b1"]),
            pair("aps_b32", TARGETS["aps_b32"]),
            mark(ratio(k1["aps_b1"], k5["aps_b1"]), TARGETS["k5_cost"], higher_is_better=False),
            mark(ratio(k1["aps_b32"], k5["aps_b32"]), TARGETS["k5_cost"], higher_is_better=False),
            metric_pair("corpus_distinct_1"),
            metric_pair("corpus_mtld"),
        ))
    return "\n".join([
        *header,
        "",
        "## Quality (best candidate against the references)",
        "",
        table(("system", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SBERT", "event-F1"), quality),
        "",
        "## Diversity",
        "",
        "Distinct-1/2, MTLD and vocabulary over the best caption of every clip; Distinct-1 within a clip's "
        "candidates and self-BLEU between them (lower = more diverse; — with one candidate).",
        "",
        table(("system", "Distinct-1", "Distinct-2", "MTLD", "vocabulary", "Distinct-1 in clip", "self-BLEU"),
              diversity),
        "",
        "## Speed (whole pipeline, 1 thread)",
        "",
        "APS = audios per second; TPS = generated tokens per second (all candidate rows, before repeats are "
        "collapsed).",
        "",
        table(("system", "APS batch 1", "TPS batch 1", "APS batch 32", "TPS batch 32"), speed),
        "",
        "## Targets (DAC ÷ AR greedy; each cell K=1 / K=5)",
        "",
        table(
            ("DAC steps", "APS b1 ≥3×", "APS b32 ≥5×", "K=5 cost b1 ≤1.5×", "K=5 cost b32 ≤1.5×",
             "Distinct-1 ≥1.3×", "MTLD ≥1.3×"),
            targets,
        ),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dac", metavar="DIR", help="DAC checkpoint (default: a random tiny model)")
    parser.add_argument("--ar", metavar="DIR", help="AR checkpoint (default: a random tiny model)")
    parser.add_argument("--data", metavar="MANIFEST", default=str(DEMO_MANIFEST), help="dataset (default: demo)")
    parser.add_argument(
        "--dac-backend", default="eager", metavar="NAME",
        help="engine backend of the DAC systems (default eager, like AR: a decoder-only comparison)",
    )
    parser.add_argument("--split", metavar="NAME", help="only clips of this split")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N clips")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per batch when captioning (default 32)")
    parser.add_argument("--speed-seconds", type=float, default=2.0, help="timed seconds per speed setting")
    parser.add_argument("--no-sbert", dest="sbert", action="store_false", help="skip SBERT similarity")
    parser.add_argument("--no-meteor", dest="meteor", action="store_false", help="skip METEOR (needs Java)")
    parser.add_argument("--out", metavar="FILE", help="also write the Markdown here (and FILE.json with all numbers)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except EdgeDacError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    if (args.dac is None) != (args.ar is None):
        raise EdgeDacError("pass both --dac and --ar, or neither (then both are random tiny models)")
    if args.limit is not None and args.limit < 1:
        raise EdgeDacError(f"--limit must be at least 1, got {args.limit}")
    started = time.perf_counter()
    manifest = load_manifest(args.data)
    items = select_items(manifest.items, args.split, args.limit, str(manifest.path))
    with tempfile.TemporaryDirectory(prefix="dac-vs-ar-") as scratch:
        if args.dac is None:
            captions = [caption for item in manifest.items for caption in item.captions]
            dac_dir, ar_dir = random_models(captions, Path(scratch))
        else:
            dac_dir, ar_dir = Path(args.dac), Path(args.ar)
        dac = one_thread_engine(load_engine(dac_dir, backend=args.dac_backend), dac_dir)
        ar = load_engine(ar_dir, backend="eager")
        untrained = [d.name for d in (dac_dir, ar_dir) if is_untrained(d)]
    for engine, kind, flag in ((dac, "dac", "--dac"), (ar, "ar", "--ar")):
        if engine.captioner.dims.kind != kind:
            raise EdgeDacError(f"{flag} {engine.model_id} is a {engine.captioner.dims.kind} model, not {kind}")
    dims_d, dims_a = dac.captioner.dims, ar.captioner.dims
    same_encoder = (dims_d.encoder_width, dims_d.encoder_layers, dims_d.max_audio_seconds) == (
        dims_a.encoder_width, dims_a.encoder_layers, dims_a.max_audio_seconds
    )

    windows = {}
    for engine in (dac, ar):
        key = (engine.captioner.dims.sample_rate, engine.captioner.dims.max_audio_samples)
        if key not in windows:
            windows[key] = np.concatenate([batch for batch, _ in load_windows(items, *key, args.batch_size)])
    lexicon = load_lexicon()
    embedder = CachedEmbedder() if args.sbert else None

    results = []
    for system in systems(dac, ar):
        engine, options = system["engine"], system["options"]
        dims = engine.captioner.dims
        audio = windows[(dims.sample_rate, dims.max_audio_samples)]
        caption_fn = caption_function(engine, options)
        predictions = caption_windows(caption_fn, audio, args.batch_size)
        metrics = score_clips(predictions, items, lexicon, sbert=args.sbert, meteor=args.meteor, embedder=embedder)
        speed = measure_speed(engine.captioner, audio, options, batch_sizes=(1, 32), stages=("pipeline",),
                              seconds=args.speed_seconds, caption_fn=caption_fn)
        row = {"name": system["name"], "steps": system["steps"], "candidates": system["candidates"],
               "metrics": metrics}
        for result in speed:
            row[f"aps_b{result.batch_size}"] = result.aps
            row[f"tps_b{result.batch_size}"] = result.tps
        results.append(row)
        print(f"{system['name']}: CIDEr-D {fmt(metrics['cider_d'])}, APS b1 {row['aps_b1']:.2f}, "
              f"b32 {row['aps_b32']:.2f}", file=sys.stderr)

    env = environment()
    header = [
        f"# DAC vs AR on {len(items)} clips of {manifest.path}" + (f" (split {args.split})" if args.split else ""),
        "",
        f"- DAC: {dac.model_id}, {sum(p.numel() for p in dac.captioner.parameters()) / 1e6:.2f} M parameters, "
        f"{dac.backend} backend",
        f"- AR: {ar.model_id}, {sum(p.numel() for p in ar.captioner.parameters()) / 1e6:.2f} M parameters, "
        "eager backend",
        f"- Machine: {env['processor']}, {env['cpu_count']} CPUs, torch {env['torch']}; speed on 1 thread; "
        f"{env['date']}; bench ran {time.perf_counter() - started:.0f} s",
    ]
    if not same_encoder:
        header.append("- **The two models have different encoders or windows: this is not a decoder-only comparison.**")
    if untrained:
        header.append(
            f"- **RANDOM, UNTRAINED weights ({', '.join(untrained)}): these numbers only test "
            "the table; they say nothing about DAC or AR.**"
        )
    report = render(results, header)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
        Path(args.out + ".json").write_text(
            json.dumps({"header": header, "systems": results, "environment": env}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
