"""Daemon latency on the virtual microphone: window end (sample clock) -> subscriber receipt.

Starts the PulseAudio virtual microphone (scripts/virtual-mic.sh), runs `edge-dac run --source
mic:pulse` in a child process with one thread, plays audio into the microphone in a loop, and
subscribes like any client. Prints p50/p95 latency, the real-time factor from the status
heartbeat, dropped windows, and the daemon's CPU % and peak RSS. Targets (issue 6, 10 s / 2 s
windows, shipped tiny model, this CPU): p95 <= 150 ms, RSS <= 600 MB, zero dropped windows.

    python bench/daemon_latency.py [--seconds 60] [--audio FILE] [--config configs/daemon.yaml]

Needs the shipped engine (edge_dac.engines); until it lands `edge-dac run` exits with a clear error.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS bytes) of ``pid`` from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(peak.split()[1]) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measure for this long after READY")
    parser.add_argument("--audio", help="file to play into the microphone (default: the demo clips)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "daemon.yaml"))
    args = parser.parse_args()

    clips = [args.audio] if args.audio else sorted(str(p) for p in (ROOT / "edge_dac/assets/demo").glob("*.flac"))
    if not clips:
        parser.error("no demo clips in edge_dac/assets/demo; pass --audio FILE")
    runtime = Path(tempfile.mkdtemp(prefix="edge-dac-bench-"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime}/pulse/native",
           "OMP_NUM_THREADS": "1"}
    subprocess.run([str(ROOT / "scripts" / "virtual-mic.sh"), "start"], env=env, check=True)
    endpoint = f"ipc://{runtime}/captions.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_dac", "run", "--config", args.config, "--source", "mic:pulse",
         "--endpoint", endpoint], env=env,
    )
    player = subprocess.Popen(
        ["sh", "-c", "while true; do for f in \"$@\"; do paplay --device=vsink \"$f\"; done; done", "sh", *clips],
        env=env,
    )
    os.environ.update(XDG_RUNTIME_DIR=env["XDG_RUNTIME_DIR"])
    from edge_dac.daemon.listen import Subscriber

    subscriber = Subscriber(endpoint)
    latencies, last_status, started = [], None, None
    cpu_start = 0.0
    try:
        while daemon.poll() is None:
            item = subscriber.receive(0.5)
            if item is None:
                continue
            received, (_, message) = time.time(), item
            if message["type"] == "status":
                last_status = message
                if started is None and message["state"] == "running":
                    started, cpu_start = time.monotonic(), proc_stats(daemon.pid)[0]
            elif message["type"] == "caption" and started is not None:
                end = datetime.fromisoformat(message["audio"]["end"].replace("Z", "+00:00")).timestamp()
                latencies.append((received - end) * 1000)
            if started is not None and time.monotonic() - started >= args.seconds:
                break
        if daemon.poll() is not None:
            print(f"daemon exited with {daemon.returncode} before the measurement finished", file=sys.stderr)
            return 1
        cpu_end, peak_rss = proc_stats(daemon.pid)
        elapsed = time.monotonic() - started
    finally:
        subscriber.close()
        player.terminate()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
        subprocess.run([str(ROOT / "scripts" / "virtual-mic.sh"), "stop"], env=env)
    lat = np.array(latencies)
    print(f"captions:          {len(lat)} in {elapsed:.0f} s")
    if len(lat):
        print(f"latency p50 / p95: {np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} ms (target p95 <= 150)")
    if last_status:
        print(f"real-time factor:  {last_status['real_time_factor']}")
        print(f"dropped windows:   {last_status['windows']['dropped']} (target 0)")
        print(f"backend / model:   {last_status['backend']} / {last_status['model_id']}")
    print(f"CPU:               {100 * (cpu_end - cpu_start) / elapsed:.0f} % of one core")
    print(f"peak RSS:          {peak_rss / 2**20:.0f} MB (target <= 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
