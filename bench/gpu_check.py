"""One command for a machine with an NVIDIA GPU: export engines, check parity with eager CUDA, print the table.

    python bench/gpu_check.py [--model DIR] [--batches 1 32 256] [--engines DIR] [--seconds 5]

Runs eager (CUDA), torch-compile (CUDA; Inductor + Triton) and TensorRT fp32 and fp16 when
torch_tensorrt imports; a backend that is missing or fails is reported and skipped, the rest go on.
Parity: fp32 backends must write eager's captions on the demo windows ("same captions" column);
fp16 may differ on a few, the column says how many. Without --model a random-weight model with the
shipped dims is used (speed of the real architecture; see bench/engines.py).

Targets (issue 5, H100-class): encoder + 4-step denoiser <= 2 ms per window at batch 1 and
>= 5,000 windows/s at batch 256; run with ``--steps 4`` for that figure. The default steps (10) and
candidates (3) are the daemon's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines import bench_model, run_bench, table  # noqa: E402 - bench/engines.py beside this file

GPU_BACKENDS = ("eager", "torch-compile", "tensorrt:fp32", "tensorrt:fp16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--backends", nargs="+", default=list(GPU_BACKENDS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32, 256])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--engines", type=Path, help="engines folder (default: a temporary one)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this check is for NVIDIA machines (bench/engines.py measures the CPU)", file=sys.stderr)
        return 2
    major, minor = torch.cuda.get_device_capability(0)
    print(f"GPU: {torch.cuda.get_device_name(0)} (capability {major}.{minor}), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or bench_model(Path(scratch) / "bench-model")
        engines = args.engines or Path(scratch) / "engines"
        rows = run_bench(
            model, args.backends, args.batches, "cuda", None, engines, args.steps, args.candidates, args.seconds,
            max_batch=max(args.batches),
        )
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
