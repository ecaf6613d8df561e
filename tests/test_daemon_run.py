"""The whole daemon in a child process: file source at real time -> windows -> engine -> ZeroMQ,
with sd_notify on a real socket, SIGHUP reloads (applied in place, refused, a new device id) and
SIGTERM drain.

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
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import soundfile
import yaml

from edge_dac.daemon.listen import Subscriber
from edge_dac.daemon.messages import load_schema

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import os
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
status = run_daemon(load_daemon_config(path), TinyModelEngine(), reload_config=lambda: load_daemon_config(path))
sys.stderr.flush()
os._exit(status)  # as edge-dac run ends (daemon/cli.py): the interpreter's teardown takes seconds at nice 19
"""


def write_config(
    path: Path, audio: Path, endpoint: str, device: str, metrics_port: int = 9721, *, hop_s: float = 0.5,
    candidates: int = 2, heartbeat_s: float = 0.5, hwm: int = 1000, end_after: int = 1,
) -> None:
    path.write_text(yaml.safe_dump({
        "source": {"kind": "file", "path": str(audio), "loop": True},
        "windows": {"length_s": 1.0, "hop_s": hop_s, "silence_dbfs": -50.0},
        "engine": {"steps": 2, "candidates": candidates},
        "events": {"end_after": end_after},
        "publisher": {"endpoint": endpoint, "device_id": device, "heartbeat_s": heartbeat_s, "hwm": hwm},
        "metrics": {"enabled": True, "port": metrics_port},
    }))


def start_child_daemon(
    tmp_path: Path, config: Path, notify_timeout_s: float
) -> tuple[subprocess.Popen, socket.socket]:
    """The daemon on ``config`` in a child process (``CHILD``: a tiny engine), with a real sd_notify
    socket bound for it; stderr is piped for the test to read."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(notify_timeout_s)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), config=str(config)))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
    return child, notify


def notifications(notify: socket.socket) -> list[str]:
    notes = []
    while True:
        try:
            notes.append(notify.recv(4096).decode())
        except TimeoutError:
            return notes


def stream_start(messages: list[dict]) -> set[str]:
    """The wall-clock time of sample 0 as the statuses give it: one value while the clock is not re-anchored."""
    return {m["audio"]["start"] for m in messages if m["type"] == "status" and m["audio"]}


def last_seq(messages: list[dict], kind: str) -> int:
    return max(m["seq"] for m in messages if m["type"] == kind)


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
    child, notify = start_child_daemon(tmp_path, config, notify_timeout_s=0.1)
    subscriber = Subscriber(endpoint)
    validator = jsonschema.Draft202012Validator(load_schema())
    try:
        # Captions, silence and events from the first config (start-up: interpreter, torch, model, warm-up).
        got = collect(subscriber, lambda g: sum(m["type"] == "caption" for m in g) >= 3
                      and any(m["type"] == "status" and m["windows"]["silent"] for m in g), 180)
        notes = notifications(notify)
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
        anchored = stream_start(got)
        assert len(anchored) == 1

        # SIGHUP with new windows, decoding, events and publisher settings (hwm needs a new socket):
        # all applied while capture, the sample clock and every sequence number go on. The same
        # subscriber stays connected (ZeroMQ reconnects it to the re-bound socket by itself).
        before = got + collect(subscriber, lambda g: False, 1.5)
        write_config(config, audio, endpoint, "first", port, hop_s=0.25, candidates=3, heartbeat_s=0.2, hwm=500,
                     end_after=2)
        child.send_signal(signal.SIGHUP)
        got = collect(subscriber, lambda g: sum(m["type"] == "caption" and len(m["candidates"]) == 3 for m in g) >= 3
                      and sum(m["type"] == "status" for m in g) >= 10, 60)
        after = [m for m in got if m["type"] != "caption" or len(m["candidates"]) == 3]
        new_captions = [m for m in after if m["type"] == "caption"]
        assert len(new_captions) >= 3, [(m["type"], m.get("candidates")) for m in got]
        for message in got:
            validator.validate(message)
        assert stream_start(before + got) == anchored  # never re-anchored: no restart of the source
        # Sequence numbers go on (a lower one means "daemon restarted" to subscribers).
        assert min(m["seq"] for m in got if m["type"] == "status") > last_seq(before, "status")
        assert min(m["seq"] for m in new_captions) > last_seq(before, "caption")
        # The stream goes on: no window starts again at sample 0, and the new hop is in force.
        assert min(m["audio"]["start_sample"] for m in new_captions) > max(
            m["audio"]["start_sample"] for m in before if m["type"] == "caption")
        assert all(m["audio"]["start_sample"] % 4000 == 0 for m in new_captions)
        assert any(m["audio"]["start_sample"] % 8000 for m in new_captions)  # a quarter-second boundary
        statuses = [m for m in after if m["type"] == "status"]
        sent = [datetime.fromisoformat(m["sent_at"].replace("Z", "+00:00")).timestamp() for m in statuses]
        assert float(np.median(np.diff(sent))) < 0.35  # heartbeat_s 0.5 -> 0.2, applied in place
        assert all(m["source"]["reopens"] == 0 for m in statuses)
        notes = notifications(notify)
        assert any(n.startswith("RELOADING=1") for n in notes) and any(n.startswith("READY=1") for n in notes), notes

        # A config that cannot be applied changes nothing and says only that.
        config.write_text(config.read_text() + "windos: {hop_s: 1.0}\n")
        before = got
        child.send_signal(signal.SIGHUP)
        got = collect(subscriber, lambda g: sum(m["type"] == "caption" for m in g) >= 3, 30)
        assert stream_start(before + got) == anchored
        assert min(m["seq"] for m in got) > 0 and all(len(m["candidates"]) == 3 for m in got if m["type"] == "caption")
        assert min(m["seq"] for m in got if m["type"] == "status") > last_seq(before, "status")

        # SIGHUP: the new device id shows up without a restart.
        write_config(config, audio, endpoint, "second", port, hop_s=0.25, candidates=3, heartbeat_s=0.2, hwm=500,
                     end_after=2)
        child.send_signal(signal.SIGHUP)
        got = collect(subscriber, lambda g: any(m["device"] == "second" and m["type"] == "caption" for m in g), 30)
        if not any(m["device"] == "second" and m["type"] == "caption" for m in got):
            child.kill()
            raise AssertionError(f"no caption after reload: {[m['type'] + m['device'] for m in got]}\n"
                                 + child.stderr.read())
        assert stream_start(got) == anchored
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
    reloads = [line for line in stderr.splitlines() if "config reloaded" in line or "reload refused" in line]
    assert len(reloads) == 3, stderr
    assert "config reloaded:" in reloads[0] and "windows.hop_s" in reloads[0] and "publisher.hwm" in reloads[0]
    assert "sequence numbers go on" in reloads[0] and "capture and the sample clock go on" in reloads[0]
    assert "reload refused, keeping the running config" in reloads[1] and "windos" in reloads[1]
    assert reloads[2].endswith("config reloaded: publisher.device_id; capture and the sample clock go on")
