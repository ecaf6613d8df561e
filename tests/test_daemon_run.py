"""The whole daemon in a child process: file source at real time -> windows -> engine -> ZeroMQ,
with sd_notify on a real socket, SIGHUP reload and SIGTERM drain.

The engine is the real captioning model (``edge_dac.model.Captioner``) with tiny random weights
from tests/factories.py, behind the engine interface, because the shipped engine
(``edge_dac.engines``) is written separately: the captions are that model's real output for those
weights, not made up by the test, so only the plumbing is asserted, not what the captions say.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import numpy as np
import soundfile
import yaml

from edge_dac.daemon.listen import Subscriber
from edge_dac.daemon.messages import load_schema

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys
sys.path.insert(0, {root!r})
from edge_dac.daemon.config import load_daemon_config
from edge_dac.daemon.run import run_daemon
from edge_dac.log import setup_logging
from edge_dac.model import DecodingOptions
from tests.factories import tiny_captioner

class TinyModelEngine:
    model_id, backend, sample_rate = "tiny-random", "torch-cpu", 16000
    def __init__(self):
        self.model = tiny_captioner(seconds=1.0)
    def caption(self, windows, steps, candidates):
        return self.model.generate(windows, DecodingOptions(steps=steps, candidates=candidates))

setup_logging("INFO")
path = {config!r}
sys.exit(run_daemon(load_daemon_config(path), TinyModelEngine(), reload_config=lambda: load_daemon_config(path)))
"""


def write_config(path: Path, audio: Path, endpoint: str, device: str, metrics_port: int = 9721) -> None:
    path.write_text(yaml.safe_dump({
        "source": {"kind": "file", "path": str(audio), "loop": True},
        "windows": {"length_s": 1.0, "hop_s": 0.5, "silence_dbfs": -50.0},
        "engine": {"steps": 2, "candidates": 2},
        "publisher": {"endpoint": endpoint, "device_id": device, "heartbeat_s": 0.5},
        "metrics": {"enabled": True, "port": metrics_port},
    }))


def collect(subscriber: Subscriber, until, timeout_s: float) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        item = subscriber.receive(0.1)
        if item is not None:
            got.append(item[1])
            if until(got):
                break
    return got


def test_daemon_end_to_end_reload_and_sigterm_drain(tmp_path):
    rng = np.random.default_rng(0)
    sound = (rng.standard_normal(32000) * 0.1).astype(np.float32)  # 2 s of noise, then 1.5 s of silence
    audio = tmp_path / "scene.flac"
    soundfile.write(str(audio), np.concatenate([sound, np.zeros(24000, np.float32)]), 16000)
    endpoint, config = f"ipc://{tmp_path}/captions.sock", tmp_path / "daemon.yaml"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_config(config, audio, endpoint, "first", port)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.1)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), config=str(config)))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
    subscriber = Subscriber(endpoint)
    validator = jsonschema.Draft202012Validator(load_schema())
    try:
        # Captions, silence and events from the first config.
        got = collect(subscriber, lambda g: sum(m["type"] == "caption" for m in g) >= 3
                      and any(m["type"] == "status" and m["windows"]["silent"] for m in g), 40)
        notes = []
        while True:
            try:
                notes.append(notify.recv(4096).decode())
            except TimeoutError:
                break
        assert any(n.startswith("READY=1") for n in notes), notes
        assert "WATCHDOG=1" in notes
        for message in got:
            validator.validate(message)
        captions = [m for m in got if m["type"] == "caption"]
        assert captions and all(m["device"] == "first" and m["model_id"] == "tiny-random" for m in captions)
        first = captions[0]
        assert (first["audio"]["end_sample"] - first["audio"]["start_sample"]) == 16000
        assert first["audio"]["start_sample"] % 8000 == 0 and len(first["candidates"]) == 2
        assert first["latency_ms"] < 5000
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        captioned = re.search(r'^edge_dac_windows_total\{outcome="captioned"\} (\S+)$', scrape, re.M)
        assert captioned and float(captioned.group(1)) >= 1, scrape
        assert "edge_dac_window_latency_seconds_bucket" in scrape and 'backend="torch-cpu"' in scrape
        events = [m for m in got if m["type"] == "event"]
        assert events and events[0]["phase"] == "start" and events[0]["event_id"] == first["event_id"]

        # SIGHUP: the new device id shows up without a restart.
        write_config(config, audio, endpoint, "second", port)
        subscriber.close()
        child.send_signal(signal.SIGHUP)
        subscriber = Subscriber(endpoint)
        got = collect(subscriber, lambda g: any(m["device"] == "second" and m["type"] == "caption" for m in g), 30)
        if not any(m["device"] == "second" and m["type"] == "caption" for m in got):
            child.kill()
            raise AssertionError(f"no caption after reload: {[m['type'] + m['device'] for m in got]}\n"
                                 + child.stderr.read())
        assert child.poll() is None

        # SIGTERM: offline status, exit 0, within 5 s.
        stopped_at = time.monotonic()
        child.send_signal(signal.SIGTERM)
        got = collect(subscriber, lambda g: any(m["type"] == "status" and m["state"] == "offline" for m in g), 6)
        child.wait(timeout=6)
        assert time.monotonic() - stopped_at < 5.5
        assert child.returncode == 0
        offline = [m for m in got if m["type"] == "status" and m["state"] == "offline"]
        assert offline and offline[0]["device"] == "second"
        assert any(m["type"] == "event" and m["phase"] == "end" for m in got) or not any(
            m["type"] == "event" for m in got
        )
    finally:
        if child.poll() is None:
            child.kill()
        subscriber.close()
        notify.close()
        stderr = child.stderr.read() if child.stderr else ""
    assert "Traceback" not in stderr, stderr
