"""Daemon latency on the virtual microphone: window end (sample clock) -> subscriber receipt.

Starts a private PulseAudio virtual microphone (scripts/virtual-mic.sh), plays the demo scenes
into it in a loop (one long stream, see ``write_playlist``), runs ``edge-dac run --source
mic:pulse`` in a child process with one engine thread, and subscribes like any client. Prints
p50/p95 latency (with the part spent before publishing, and the engine time), the real-time
factor from the status heartbeat, windows captioned/silent/dropped, input overflows, the daemon's
CPU % and peak RSS (the kernel's high-water mark, VmHWM: start-up included, between samples
included), the load average (the machine may be shared), and how many windows that cover a
scene by >= 8 s were captioned with exactly the scene's event words.
Targets (issue 6, 10 s / 2 s windows, shipped tiny model, this CPU):
p95 <= 150 ms, zero dropped windows; peak RSS <= 500 MB (issue 12; issue 6 set 600 MB).

    python bench/daemon_latency.py --model DIR [--seconds 60] [--backend auto] [--config FILE]

``--model``: a checkpoint folder (e.g. from scripts/train_demo_model.py); default: the shipped model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "edge_dac" / "assets" / "demo"
VIRTUAL_MIC = ROOT / "scripts" / "virtual-mic.sh"
MIN_OVERLAP_S = 8.0
START_TIMEOUT_S = 120.0


class ProcessStats:
    """CPU seconds and RSS of one process: psutil when installed, else /proc (Linux)."""

    def __init__(self, pid: int):
        self.pid = pid
        try:
            import psutil

            self._process = psutil.Process(pid)
        except ImportError:
            self._process = None
        self.peak_rss = 0

    def cpu_seconds(self) -> float:
        if self._process is not None:
            times = self._process.cpu_times()
            return times.user + times.system
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        """Current RSS in bytes; also keeps the peak of the values seen."""
        value = self._process.memory_info().rss if self._process is not None else self._status_bytes("VmRSS") or 0
        self.peak_rss = max(self.peak_rss, value)
        return value

    def peak(self) -> tuple[int, str]:
        """(bytes, how measured): the process's high-water mark VmHWM on Linux (every moment since it
        started, not only the samples), else the peak of the samples ``rss`` took."""
        if (value := self._status_bytes("VmHWM")) is not None:
            return value, "VmHWM: the process's peak since start-up"
        return self.peak_rss, "peak of the samples taken"

    def _status_bytes(self, field: str) -> int | None:
        try:
            lines = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        except OSError:
            return None
        line = next((x for x in lines if x.startswith(f"{field}:")), None)
        return int(line.split()[1]) * 1024 if line else None


@dataclass(frozen=True)
class Played:
    name: str
    classes: frozenset[str]
    start: float  # unix time (the clip lands on the sample clock ~35 ms later: measured, negligible here)
    end: float


def write_playlist(clips: list[tuple[Path, frozenset[str], float]], seconds: float, path: Path) -> list[tuple]:
    """One file holding the clips in a loop for at least ``seconds``; returns (clip, offset) in play order.

    One long stream, because PulseAudio's null sink shifts its monitor's sample clock at every new
    player: measured here, the microphone's samples fall ~55 ms behind the wall clock when the first
    player connects and ~6 ms more at each later one, which would show up as latency that no real
    microphone has. Started before the daemon, the one stream shifts nothing the daemon measures.
    """
    import soundfile

    from edge_dac.audio import load_audio

    audio = [load_audio(clip[0]) for clip in clips]
    order, offset, pieces = [], 0.0, []
    while offset < seconds:
        for clip, samples in zip(clips, audio, strict=True):
            order.append((clip, offset))
            pieces.append(samples)
            offset += len(samples) / 16000
    soundfile.write(str(path), np.concatenate(pieces), 16000, subtype="PCM_16")
    return order


def demo_clips(audio: str | None) -> list[tuple[Path, frozenset[str], float]]:
    """(file, event classes, seconds) of the demo scenes, or of one file (no classes)."""
    import soundfile

    if audio:
        return [(Path(audio), frozenset(), soundfile.info(audio).duration)]
    clips = []
    for line in (DEMO / "manifest.jsonl").read_text().splitlines():
        item = json.loads(line)
        path = DEMO / item["audio"]
        clips.append((path, frozenset(e["class"] for e in item["events"]), soundfile.info(str(path)).duration))
    return clips


def unix_time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def write_config(base: str | None, backend: str, path: Path) -> None:
    data = yaml.safe_load(Path(base).read_text()) if base else {}
    data = data or {}
    data.setdefault("engine", {}).update(backend=backend, threads=1)
    data.setdefault("publisher", {})["device_id"] = "bench"
    path.write_text(yaml.safe_dump(data))


def scene_agreement(captions: list[dict], played: list[Played]) -> tuple[int, int]:
    """(windows whose caption names exactly the scene's event classes, windows covering a scene by >= 8 s)."""
    from edge_dac.lexicon import load_lexicon

    labels_of = load_lexicon().labels_in_caption
    matched = covered = 0
    for message in captions:
        start, end = unix_time(message["audio"]["start"]), unix_time(message["audio"]["end"])
        for clip in played:
            if clip.classes and min(end, clip.end) - max(start, clip.start) >= MIN_OVERLAP_S:
                covered += 1
                matched += labels_of(message["caption"]) == clip.classes
    return matched, covered


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{np.percentile(values, 50):.0f} / {np.percentile(values, 95):.0f} / {max(values):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measure for this long once audio flows")
    parser.add_argument("--backend", default="auto", help="engine backend (auto, eager, onnxruntime, ...)")
    parser.add_argument("--config", help="daemon YAML to start from (default: built-in defaults)")
    parser.add_argument("--audio", help="one file to play in a loop instead of the demo scenes")
    parser.add_argument("--save", help="write every caption message received (+ receipt time) to this JSONL file")
    parser.add_argument("--plot", help="write latency, clock offset and measured drift over the run to this PNG")
    args = parser.parse_args()

    clips = demo_clips(args.audio)
    runtime = Path(tempfile.mkdtemp(prefix="edge-dac-bench-"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime}/pulse/native",
           "OMP_NUM_THREADS": "1"}
    config, log = runtime / "daemon.yaml", runtime / "daemon.log"
    write_config(args.config, args.backend, config)
    subprocess.run([str(VIRTUAL_MIC), "start"], env=env, check=True)
    endpoint = f"ipc://{runtime}/captions.sock"
    command = [sys.executable, "-m", "edge_dac", "run", "--config", str(config), "--source", "mic:pulse",
               "--endpoint", endpoint]
    if args.model:
        command += ["--model", args.model]
    playlist = runtime / "playlist.flac"
    order = write_playlist(clips, START_TIMEOUT_S + args.seconds + 30, playlist)
    load_before = os.getloadavg()
    player = subprocess.Popen(["paplay", "--device=vsink", str(playlist)], env=env)
    played_from = time.time()
    with log.open("w") as stderr:
        daemon = subprocess.Popen(command, env=env, stderr=stderr, cwd=ROOT)
    from edge_dac.daemon.listen import Subscriber

    subscriber = Subscriber(endpoint)
    stats = ProcessStats(daemon.pid)
    latencies, daemon_latencies, processing, captions, factors = [], [], [], [], []
    ahead, drifts = [], []  # (seconds since audio flowed, ms) per caption; (seconds, ppm) per status
    first_status = last_status = None
    started = cpu_start = None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while daemon.poll() is None:
            if started is None and time.monotonic() > deadline:
                print(f"no audio from the daemon within {START_TIMEOUT_S:.0f} s; log: {log}", file=sys.stderr)
                return 1
            item = subscriber.receive(0.5)
            if item is not None:
                received, (_, message) = time.time(), item
                if message["type"] == "status":
                    last_status = message
                    if started is not None and message["real_time_factor"] is not None:
                        factors.append(message["real_time_factor"])  # each covers one heartbeat of audio
                    if started is not None and message.get("drift_ppm") is not None:
                        drifts.append((time.monotonic() - started, message["drift_ppm"]))
                    # Audio flows once the sample clock moves (the first callback comes 1-2 s after start).
                    if started is None and message["state"] == "running" and (message["audio"] or {}).get("end_sample"):
                        started, cpu_start, first_status = time.monotonic(), stats.cpu_seconds(), message
                elif message["type"] == "caption" and started is not None:
                    latencies.append((received - unix_time(message["audio"]["end"])) * 1000)
                    daemon_latencies.append(message["latency_ms"])
                    # The daemon counts from min(audio clock, arrival) and the subscriber from the audio
                    # clock, so their difference (less the ~0.1 ms of transport, hence the floor at 0)
                    # is how far the audio clock put the window's end after its last sample had
                    # reached the process.
                    ahead.append((time.monotonic() - started, max(0.0, message["latency_ms"] - latencies[-1])))
                    processing.append(message["processing_ms"])
                    captions.append({**message, "received_at": received})
            if started is not None:
                stats.rss()
                if time.monotonic() - started >= args.seconds:
                    break
        if daemon.poll() is not None:
            print(f"daemon exited with {daemon.returncode} before the measurement finished; log: {log}",
                  file=sys.stderr)
            return 1
        cpu_end, elapsed = stats.cpu_seconds(), time.monotonic() - started
        stats.rss()
        peak_rss, peak_how = stats.peak()  # while the daemon still runs: /proc/PID goes with it
    finally:
        subscriber.close()
        try:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(10)
        except subprocess.TimeoutExpired:
            print("daemon did not stop within 10 s of SIGTERM; killed", file=sys.stderr)
            daemon.kill()
        finally:
            player.kill()
            subprocess.run([str(VIRTUAL_MIC), "stop"], env=env)
    load_after = os.getloadavg()

    if args.plot:
        from edge_dac.evaluation.plots import plot_daemon_timeline

        plot_daemon_timeline([(t / 60, ms, lead) for (t, lead), ms in zip(ahead, latencies, strict=True)],
                             [(t / 60, ppm) for t, ppm in drifts], args.plot)
    if args.save:
        Path(args.save).write_text("".join(json.dumps(m) + "\n" for m in captions))
    windows = {key: last_status["windows"][key] - first_status["windows"][key] for key in ("captioned", "silent")}
    played = [Played(path.stem, classes, played_from + offset, played_from + offset + duration)
              for (path, classes, duration), offset in order]
    matched, covered = scene_agreement(captions, played)
    print(f"model / backend:        {last_status['model_id']} / {last_status['backend']} (1 thread)")
    print(f"measured:               {elapsed:.0f} s of demo scenes in a loop, {len(captions)} captions "
          f"received ({windows['captioned']} captioned, {windows['silent']} silent windows)")
    print(f"latency p50 / p95 / max: {percentiles(latencies)} ms  window end -> subscriber (target p95 <= 150)")
    print(f"  daemon-side part:      {percentiles(daemon_latencies)} ms  window end -> published")
    print(f"  engine time:           {percentiles(processing)} ms  per batch")
    if factors:
        print(f"real-time factor:       {np.mean(factors):.3f} mean, {max(factors):.3f} max over 1 s heartbeats "
              "(engine busy time / audio time)")
    print(f"dropped windows:        {last_status['windows']['dropped']} (target 0); "
          f"input overflows: {last_status['source']['overflows']}")
    if last_status.get("drift_ppm") is not None and drifts:
        print(f"device clock drift:     {last_status['drift_ppm']:+.1f} ppm measured at the end "
              f"({min(d for _, d in drifts):+.1f} to {max(d for _, d in drifts):+.1f} over the run; "
              "audio times corrected for it)")
    if ahead:
        offsets = [ms for _, ms in ahead]
        late = sum(ms > 5.0 for ms in offsets)
        print(f"audio clock ahead:      {percentiles(offsets)} ms  window end on the audio clock after its "
              f"arrival (daemon-side - subscriber latency); {late} windows by > 5 ms")
    print(f"CPU:                    {100 * (cpu_end - cpu_start) / elapsed:.1f} % of one core")
    print(f"peak RSS:               {peak_rss / 2**20:.0f} MB ({peak_how}; target <= 500)")
    print(f"scene words:            {matched}/{covered} windows covering a scene by >= {MIN_OVERLAP_S:.0f} s "
          "name exactly its event classes")
    print(f"load average:           {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"({os.cpu_count()} CPUs; the machine may be shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
