"""DAC against its AR twin on long audio from the command line, as a user runs them (issue 13).

Builds a file of ``--minutes`` of the bundled demo scenes one after another, then runs
``edge-dac caption FILE --window 10 --hop 2 --threads 1`` (the daemon's windows, one thread) for
each model with its own defaults (backend ``auto``, DAC's steps and candidates, AR greedy), the
two alternating, ``--repeats`` times each. Wall time includes the process start and the model and
engine load, as a user waits for them. Prints seconds per run (median), windows per second and the
DAC/AR ratio of wall time (issue 13's target: AR time / DAC time >= 1.5 at equal quality; quality
is bench/dac_vs_ar.py's part). The machine may be shared: the runs alternate so both see the same.

    python bench/caption_long.py [--dac DIR] [--ar DIR] [--minutes 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_dac.audio import load_audio  # noqa: E402
from edge_dac.const import DEMO_DIR, default_model_dir  # noqa: E402

RATE = 16000


def long_file(minutes: float, path: Path) -> None:
    """The demo scenes in a loop for ``minutes``."""
    scenes = np.concatenate([load_audio(p, RATE) for p in sorted(DEMO_DIR.glob("*.flac"))])
    soundfile.write(str(path), np.resize(scenes, int(minutes * 60 * RATE)), RATE, subtype="PCM_16")


def caption_once(model: str, path: Path, window: float, hop: float) -> tuple[float, int]:
    """(wall seconds, captioned windows) of one ``edge-dac caption`` process."""
    command = [sys.executable, "-m", "edge_dac", "caption", str(path), "--model", model,
               "--window", str(window), "--hop", str(hop), "--threads", "1"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return took, sum(1 for line in result.stdout.splitlines() if line.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dac", default=str(default_model_dir()), help="DAC checkpoint (default: the shipped one)")
    parser.add_argument("--ar", default=str(ROOT / "models" / "ar-tiny"), help="AR twin (default: models/ar-tiny)")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--hop", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edge-dac-long-") as folder:
        path = Path(folder) / "long.flac"
        long_file(args.minutes, path)
        times: dict[str, list[float]] = {"DAC": [], "AR": []}
        windows: dict[str, int] = {}
        for repeat in range(args.repeats):
            for name, model in (("DAC", args.dac), ("AR", args.ar)):
                took, count = caption_once(model, path, args.window, args.hop)
                times[name].append(took)
                windows[name] = count
                print(f"run {repeat + 1}/{args.repeats} {name}: {took:.1f} s, {count} windows", file=sys.stderr)
    print(f"{args.minutes:g} min of demo scenes, windows {args.window:g} s / hop {args.hop:g} s, 1 thread, "
          "each model's defaults, process start included")
    for name in times:
        median = statistics.median(times[name])
        print(f"  {name:3s}: {median:6.1f} s (median of {len(times[name])}), {windows[name] / median:5.1f} windows/s")
    ratio = statistics.median(times["AR"]) / statistics.median(times["DAC"])
    print(f"  DAC speed-up over AR (AR time / DAC time): {ratio:.2f}x (target >= 1.5 at equal quality)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
