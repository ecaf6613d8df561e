"""Engine speed: per-window latency p50/p99 and audios per second (APS) for every backend, as ratios to eager.

One run, one thread (torch.set_num_threads(1), ONNX Runtime intra_op 1), batch 1 and 32, 10 s
windows cut from the bundled demo scenes, the daemon's decoding (10 steps, 3 candidates). Each
backend's captions are compared with eager's on the same windows (same seed): "same" must be all of
them for fp32. The model is the shipped one (edge_dac/assets/model); ``--random`` instead builds a
randomly initialised DAC captioner of the ModelDims defaults (conv1d stem, width 192, 4 + 4 layers),
the setting of the first measurements.

    python bench/engines.py [--backends eager onnxruntime onnxruntime:int8 torch-compile] [--batches 1 32]
                            [--threads 1] [--model DIR] [--engines DIR] [--device cpu] [--json FILE]

Target (issue 5): the backend ``auto`` picks >= 2x eager APS at batch 1. The order ``auto`` uses
(edge_dac/engines/select.py) comes from this table.
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
sys.path.insert(0, str(ROOT))

from edge_dac.const import LEXICON_PATH, default_model_dir  # noqa: E402
from edge_dac.engines import load_engine  # noqa: E402
from edge_dac.engines.clips import demo_windows  # noqa: E402
from edge_dac.errors import EdgeDacError  # noqa: E402
from edge_dac.model import Captioner, ModelDims, save_captioner, train_tokenizer  # noqa: E402

CPU_BACKENDS = ("eager", "onnxruntime", "onnxruntime:int8", "torch-compile")


def bench_model(folder: Path) -> Path:
    """A random-weight DAC model with the shipped dims, saved as a checkpoint (the speed of the real thing)."""
    if (folder / "config.json").is_file():
        return folder
    lexicon = LEXICON_PATH.read_text().splitlines()
    tokenizer = train_tokenizer(lexicon, vocab_size=1000)
    torch.manual_seed(0)
    dims = ModelDims(vocab_size=len(tokenizer), dropout=0.0)
    return save_captioner(Captioner(dims, tokenizer).eval(), folder, metadata={"purpose": "bench: random weights"})


def time_calls(engine, windows: np.ndarray, batch: int, steps: int, candidates: int, seconds: float, calls: int):
    """Call times (s) of ``engine.caption`` on batches of ``batch`` windows: at least ``calls`` or ``seconds``."""
    batch_windows = np.resize(windows, (batch, windows.shape[1]))
    engine.caption(batch_windows, steps, candidates)  # warm-up (allocation, lazy compilation)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < calls or (time.perf_counter() - started < seconds and len(times) < 10 * calls):
        begin = time.perf_counter()
        engine.caption(batch_windows, steps, candidates)
        times.append(time.perf_counter() - begin)
    return np.array(times)


def run_bench(
    model: Path,
    backends: list[str],
    batches: list[int],
    device: str,
    threads: int | None,
    engines_dir: Path,
    steps: int = 10,
    candidates: int = 3,
    seconds: float = 10.0,
    max_batch: int | None = None,
) -> list[dict]:
    """One row per (backend, batch): latency p50/p99 per call, ms per window, APS, start-up, parity with eager."""
    if threads:
        torch.set_num_threads(threads)
    reference = load_engine(model, "eager", threads=threads, device=device)
    windows = demo_windows(reference.sample_rate, reference.window_samples)
    eager_captions = [result[0].caption for result in reference.caption(windows, steps, candidates)]
    rows = []
    for spec in backends:
        name, _, precision = spec.partition(":")
        started = time.perf_counter()
        try:
            engine = reference if name == "eager" else load_engine(
                model, name, threads=threads, device=device, engines_dir=engines_dir, precision=precision or None,
                max_batch=max_batch,
            )
        except EdgeDacError as error:
            print(f"{spec}: skipped ({error})", file=sys.stderr, flush=True)
            rows.append({"backend": spec, "skipped": str(error)})
            continue
        startup = time.perf_counter() - started
        captions = [result[0].caption for result in engine.caption(windows, steps, candidates)]
        differing = sum(a != b for a, b in zip(captions, eager_captions, strict=True))
        for batch in batches:
            calls = 20 if batch == 1 else 3
            times = time_calls(engine, windows, batch, steps, candidates, seconds, calls)
            row = {
                "backend": spec, "device": device, "batch": batch, "calls": len(times),
                "p50_ms": 1000 * float(np.percentile(times, 50)), "p99_ms": 1000 * float(np.percentile(times, 99)),
                "ms_per_window": 1000 * float(times.mean()) / batch, "aps": batch / float(times.mean()),
                "startup_s": startup, "same_captions": f"{len(windows) - differing}/{len(windows)}",
            }
            rows.append(row)
            progress = f"{spec} batch {batch}: {row['aps']:.2f} APS, p50 {row['p50_ms']:.1f} ms"
            print(progress, file=sys.stderr, flush=True)
    eager = {row["batch"]: row["aps"] for row in rows if row["backend"] == "eager" and "aps" in row}
    for row in rows:
        if "aps" in row and row["batch"] in eager:
            row["x_eager"] = row["aps"] / eager[row["batch"]]
    return rows


def table(rows: list[dict]) -> str:
    header = "| backend | batch | p50 ms/call | p99 ms/call | ms/window | APS | x eager | start-up s | same captions |"
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['backend']} | skipped: {row['skipped']} | | | | | | | |")
            continue
        lines.append(
            f"| {row['backend']} | {row['batch']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['ms_per_window']:.1f} | {row['aps']:.2f} | {row.get('x_eager', float('nan')):.2f} | "
            f"{row['startup_s']:.1f} | {row['same_captions']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(CPU_BACKENDS), help="name or name:precision")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="measure each (backend, batch) about this long")
    parser.add_argument("--model", type=Path, help="checkpoint (default: the shipped model)")
    parser.add_argument("--random", action="store_true", help="random weights of the ModelDims defaults instead")
    parser.add_argument("--engines", type=Path, help="engines folder (default: a temporary one, built fresh)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = bench_model(Path(scratch) / "bench-model") if args.random else args.model or default_model_dir()
        engines = args.engines or Path(scratch) / "engines"
        rows = run_bench(
            model, args.backends, args.batches, args.device, args.threads, engines, args.steps, args.candidates,
            args.seconds,
        )
    print(f"\n{args.device}, {args.threads} thread(s), {args.steps} steps x {args.candidates} candidates, "
          f"torch {torch.__version__}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
