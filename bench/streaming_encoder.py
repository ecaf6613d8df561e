"""The audio side per window, whole-window encoder against a streaming one, as the daemon slides.

Windows of the model's length slide by ``--hop`` seconds over the bundled demo scenes played one
after another (the daemon's 10 s / 2 s). For each backend (eager, onnxruntime; one thread) it
times ``DecodingTask.context`` per window, one window a call as the daemon captions them:

- whole: the shipped whole-window encoder (every window encoded from scratch);
- streaming, sliding: the streaming encoder with its chunk cache warm, i.e. only the newest chunk
  encoded, then the window-level blocks and the decoder's keys/values;
- streaming, cold: the same windows with the cache emptied before each (what a window costs alone).

It prints ms per window and the ratios; issue 13's target is sliding <= 1/4 of whole. It also
prints how far the streaming features are from the whole-window ones (relative L2, cosine) on the
same windows, and how many best captions (the decoding defaults) agree.

    python bench/streaming_encoder.py --streaming DIR [--model DIR] [--hop 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_dac.audio import load_audio  # noqa: E402
from edge_dac.const import DEMO_DIR, default_model_dir  # noqa: E402
from edge_dac.engines import load_engine  # noqa: E402
from edge_dac.model.decoding import DecodingOptions, DecodingTask  # noqa: E402


def sliding_windows(sample_rate: int, window: int, hop: int, count: int) -> np.ndarray:
    stream = np.concatenate([load_audio(path, sample_rate) for path in sorted(DEMO_DIR.glob("*.flac"))])
    starts = range(0, stream.size - window + 1, hop)
    return np.stack([stream[s : s + window] for s in starts][:count]).astype(np.float32)


def time_context(engine, windows: np.ndarray, cold: bool) -> list[float]:
    task = DecodingTask(engine.captioner, DecodingOptions(), engine.runner)
    chunks = getattr(engine.runner, "chunks", None)
    times = []
    with torch.inference_mode():
        for window in windows:
            if cold and chunks is not None:
                chunks.kept.clear()
            started = time.perf_counter()
            task.context(torch.from_numpy(window[None]))
            times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streaming", required=True, help="a checkpoint with a streaming encoder")
    parser.add_argument("--model", help="the whole-window model (default: the shipped one)")
    parser.add_argument("--backends", default="eager,onnxruntime")
    parser.add_argument("--hop", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=20, help="sliding windows timed per case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    whole_dir = Path(args.model) if args.model else default_model_dir()
    rows = []
    for backend in args.backends.split(","):
        whole = load_engine(whole_dir, backend, threads=1)
        streaming = load_engine(Path(args.streaming), backend, threads=1)
        dims = streaming.captioner.dims
        if not dims.encoder_chunk_samples:
            raise SystemExit(f"{args.streaming}: not a streaming encoder (encoder_chunk_seconds is 0)")
        hop = int(round(args.hop * dims.sample_rate))
        windows = sliding_windows(dims.sample_rate, dims.max_audio_samples, hop, args.windows + 1)
        for engine in (whole, streaming):  # warm-up: allocation, first-call costs
            time_context(engine, windows[:1], cold=True)
        figures = {
            "whole": statistics.median(time_context(whole, windows, cold=True)),
            "sliding": statistics.median(time_context(streaming, windows, cold=False)[1:]),
            "cold": statistics.median(time_context(streaming, windows, cold=True)),
        }
        rows.append((backend, figures))
        print(f"{backend}: whole {figures['whole']:.1f} ms, streaming sliding {figures['sliding']:.1f} ms "
              f"({figures['sliding'] / figures['whole']:.2f}x whole; target <= 0.25), "
              f"streaming cold {figures['cold']:.1f} ms ({figures['cold'] / figures['whole']:.2f}x)", flush=True)
    with torch.inference_mode():
        audio = torch.from_numpy(windows)
        mine = streaming.captioner.encode_audio(audio)
        theirs = whole.captioner.encode_audio(audio)
    error = float((mine - theirs).norm() / theirs.norm())
    cosine = float(torch.nn.functional.cosine_similarity(mine, theirs, dim=-1).mean())
    options = DecodingOptions()
    a = [c[0].caption for c in whole.caption(windows, options.steps, options.candidates)]
    b = [c[0].caption for c in streaming.caption(windows, options.steps, options.candidates)]
    print(f"\nwindows {dims.max_audio_seconds:g} s, hop {args.hop:g} s, chunk {dims.encoder_chunk_seconds:g} s, "
          f"{dims.encoder_chunk_layers} of {dims.encoder_layers} encoder blocks per chunk; one thread, "
          "median ms a window")
    print("| backend | whole-window encoder | streaming, sliding | streaming, cold | sliding / whole |")
    print("|---|---|---|---|---|")
    for backend, f in rows:
        ratio = f["sliding"] / f["whole"]
        print(f"| {backend} | {f['whole']:.1f} | {f['sliding']:.1f} | {f['cold']:.1f} | {ratio:.2f} |")
    print(f"\nfeatures against the whole-window encoder on these {len(windows)} windows: relative L2 {error:.3f}, "
          f"cosine {cosine:.3f}; best captions equal: {sum(x == y for x, y in zip(a, b, strict=True))}/{len(a)}")
    for x, y in list(zip(a, b, strict=True))[:4]:
        print(f"  whole: {x!r}\n  streaming: {y!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
