"""Reliability of what the daemon publishes (issue 12): only strict JSON, failed captions reported as
status, ``--fast`` latency and timestamps, endpoint validation, and audio times tied to the wall clock.

Real parts throughout: real ZeroMQ sockets, real files, real model forward passes (the tiny random
model of tests/factories.py where a poisoned or fast model is needed, the shipped model where the
command line is the subject).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile
import yaml
import zmq

from edge_dac.config import validate_config
from edge_dac.daemon.clock import AudioClock
from edge_dac.daemon.config import DaemonConfig, default_endpoint
from edge_dac.daemon.listen import Subscriber
from edge_dac.daemon.messages import load_schema
from edge_dac.daemon.publisher import Publisher
from edge_dac.errors import ConfigError
from tests.test_daemon_support import caption_body, connect_until_flowing

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000

CHILD = """
import sys
sys.path.insert(0, {root!r})
import torch
from edge_dac.daemon.config import load_daemon_config
from edge_dac.daemon.run import run_daemon
from edge_dac.log import setup_logging
from edge_dac.model import DecodingOptions
from tests.factories import tiny_captioner

class TinyModelEngine:
    model_id, backend, sample_rate = "tiny-random", "torch-cpu", 16000
    def __init__(self, poison):
        self.model = tiny_captioner(seconds=1.0)
        if poison:  # what an fp16 overflow or a bit flip in memory does: one NaN weight, after loading
            with torch.no_grad():
                self.model.decoder.blocks[0].mlp[0].weight[0, 0] = float("nan")
    def caption(self, windows, steps, candidates):
        return self.model.generate(windows, DecodingOptions(steps=steps, candidates=candidates))

setup_logging("INFO")
sys.exit(run_daemon(load_daemon_config({config!r}), TinyModelEngine({poison!r})))
"""


def strict_json(body: bytes) -> dict:
    """What Node's JSON.parse accepts: no NaN, Infinity or -Infinity."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(body, parse_constant=refuse)


def noise_file(path: Path, seconds: float, level: float = 0.1, rate: int = RATE) -> Path:
    samples = (np.random.default_rng(0).standard_normal(int(seconds * rate)) * level).astype(np.float32)
    soundfile.write(str(path), samples, rate)
    return path


def start_child(tmp_path: Path, config: dict, poison: bool = False) -> subprocess.Popen:
    (tmp_path / "daemon.yaml").write_text(yaml.safe_dump(config))
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), config=str(tmp_path / "daemon.yaml"), poison=poison))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)


def raw_messages(endpoint: str, child: subprocess.Popen, timeout_s: float) -> list[bytes]:
    """Every body published until the offline status (or the child exits, or the timeout)."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"edge-dac/v1/")
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    bodies, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if socket.poll(100):
                _, body = socket.recv_multipart()
                bodies.append(body)
                if b'"state":"offline"' in body:
                    break
            elif child.poll() is not None:
                break
    finally:
        socket.close()
        context.term()
    return bodies


# -- 1. only strict JSON is published; a failed caption is a status, not an empty caption --------------


def test_a_message_holding_nan_is_never_sent(tmp_path):
    endpoint = f"ipc://{tmp_path}/captions.sock"
    publisher = Publisher(endpoint, "kitchen")
    subscriber = Subscriber(endpoint)
    raw = subscriber.socket
    try:
        connect_until_flowing(publisher, subscriber)
        poisoned = caption_body()
        poisoned["score"] = poisoned["candidates"][0]["score"] = float("nan")
        infinite = {**caption_body(), "latency_ms": float("inf")}
        assert publisher.publish("caption", poisoned) is None
        assert publisher.publish("caption", infinite) is None
        sent = publisher.publish("caption", caption_body(text="after the refused ones"))
        assert raw.poll(2000)
        topic, body = raw.recv_multipart()
        assert not raw.poll(300)  # nothing else came: the two refused messages never went out
    finally:
        subscriber.close()
        publisher.close()
    message = strict_json(body)
    assert topic == b"edge-dac/v1/caption/kitchen" and message == sent
    assert message["caption"] == "after the refused ones"
    assert publisher.refused == 2
    assert message["seq"] == 2  # the refused ones used up seq 0 and 1: a subscriber sees the loss


def test_nan_captions_are_reported_as_status_errors_and_never_published(tmp_path):
    """A model that writes NaN scores (one NaN weight) makes the daemon degraded, with the reason and a
    count of failed windows in its status; no caption and no event is published, and all is strict JSON."""
    endpoint = f"ipc://{tmp_path}/captions.sock"
    audio = noise_file(tmp_path / "noise.flac", 4.0)
    child = start_child(tmp_path, {
        "source": {"kind": "file", "path": str(audio)},
        "windows": {"length_s": 1.0, "hop_s": 0.5, "silence_dbfs": None},
        "engine": {"steps": 2, "candidates": 2},
        "publisher": {"endpoint": endpoint, "device_id": "poisoned", "heartbeat_s": 0.2},
    }, poison=True)
    try:
        bodies = raw_messages(endpoint, child, 90)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    stderr = child.stderr.read()
    messages = [strict_json(body) for body in bodies]  # every body parses as strict JSON
    validator = jsonschema.Draft202012Validator(load_schema())
    for message in messages:
        validator.validate(message)
    assert not [m for m in messages if m["type"] in ("caption", "event")], stderr
    statuses = [m for m in messages if m["type"] == "status"]
    failing = [m for m in statuses if m["windows"]["failed"] > 0]
    assert failing, stderr
    assert all(m["state"] in ("degraded", "offline") for m in failing)
    assert "non-finite scores (nan)" in failing[-1]["error"]
    assert failing[-1]["windows"]["captioned"] == 0
    assert "non-finite scores" in stderr and "Traceback" not in stderr
    assert child.returncode == 0


def test_caption_command_never_prints_nan(tmp_path):
    """``edge-dac caption --json`` on a model whose forward pass gives NaN: an error line per window, no
    JSON line, exit 1. The checkpoint check refuses NaN weights on disk, so the child poisons one weight
    after loading (as an fp16 overflow or a bit flip would at run time) by wrapping the loader; the
    forward passes are real."""
    from edge_dac.model import save_captioner
    from tests.factories import tiny_captioner

    model = tiny_captioner(seconds=1.0)
    path = save_captioner(model, tmp_path / "model")
    audio = noise_file(tmp_path / "noise.flac", 2.0)
    code = (
        "import sys, torch\n"
        "from edge_dac.model import checkpoint\n"
        "load = checkpoint.load_captioner\n"
        "def poisoned(*a, **k):\n"
        "    model = load(*a, **k)\n"
        "    with torch.no_grad():\n"
        "        model.decoder.blocks[0].mlp[0].weight[0, 0] = float('nan')\n"
        "    return model\n"
        "import edge_dac.engines.select as select\n"
        "select.load_captioner = poisoned\n"
        "from edge_dac.cli import main\n"
        f"sys.exit(main(['caption', '--backend', 'eager', '--json', '--model', {str(path)!r}, {str(audio)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "non-finite score" in line]
    assert len(errors) == 2 and all("weights may be damaged" in line for line in errors), result.stderr


# -- 3. endpoints: ports 1-65535, ipc folders that exist (or live in the runtime dir), no files left --------


@pytest.mark.parametrize("endpoint, expected", [
    ("tcp://127.0.0.1:99999", "port '99999' is not a number from 1 to 65535"),  # ZeroMQ: port 34463
    ("tcp://127.0.0.1:65536", "port '65536'"),
    ("tcp://127.0.0.1:0", "port '0'"),  # ZeroMQ: a port of its choosing
    ("tcp://127.0.0.1:*", "port '*'"),
    ("tcp://127.0.0.1:-1", "port '-1'"),  # ZeroMQ: 65535
    ("tcp://127.0.0.1", "no port"),
    ("udp://127.0.0.1:5556", "expected ipc:///ABSOLUTE/PATH or tcp://HOST:PORT"),
    ("ipc://captions.sock", "must be absolute"),
    ("ipc://@edge-dac", "abstract ipc sockets"),
    ("ipc:///tmp/" + "x" * 120 + ".sock", "longer than the 107 bytes"),
])
def test_bad_endpoints_are_refused_before_binding(endpoint, expected):
    with pytest.raises(ConfigError) as raised:
        Publisher(endpoint, "dev")
    assert expected in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match=re.escape(expected)):  # the config (and a SIGHUP reload) refuses it too
        validate_config({"publisher": {"endpoint": endpoint}}, DaemonConfig, "daemon.yaml")


def test_run_with_port_99999_exits_with_one_line_and_binds_nothing(tmp_path):
    port = 99999 % 65536  # where ZeroMQ would have bound
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pytest.fail(f"port {port} is busy on this machine; the check below needs it free")
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "run", "--source", "demo", "--endpoint", "tcp://127.0.0.1:99999"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "command line: key 'publisher.endpoint': port '99999' is not a number from 1 to 65535" in lines[0]
    assert "Value error" not in lines[0]


def test_ipc_folder_must_exist_and_is_created_only_in_the_runtime_dir(tmp_path, monkeypatch):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(ConfigError, match="does not exist; create it or choose another --endpoint"):
        Publisher(f"ipc://{missing}/captions.sock", "dev")
    assert not (tmp_path / "no").exists()  # a typo does not grow a tree of folders

    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    endpoint = default_endpoint()
    assert endpoint == f"ipc://{tmp_path}/xdg/edge-dac/captions.sock"
    publisher = Publisher(endpoint, "dev")  # $XDG_RUNTIME_DIR/edge-dac is created: the default lives there
    try:
        assert (tmp_path / "xdg" / "edge-dac" / "captions.sock").is_socket()
    finally:
        publisher.close()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "systemd-run"))  # systemd's RuntimeDirectory=
    Publisher(f"ipc://{tmp_path}/systemd-run/sub/captions.sock", "dev").close()
    assert (tmp_path / "systemd-run" / "sub").is_dir()


def test_clean_exit_removes_the_socket_and_its_lock_file_and_a_crash_leaves_no_block(tmp_path):
    """A daemon that finishes its file exits 0 and leaves neither captions.sock nor captions.sock.lock;
    one killed with SIGKILL leaves both behind, and the next daemon starts anyway."""
    sock, lock = tmp_path / "captions.sock", tmp_path / "captions.sock.lock"
    audio = noise_file(tmp_path / "noise.flac", 1.5)
    child = start_child(tmp_path, {
        "source": {"kind": "file", "path": str(audio)},
        "windows": {"length_s": 1.0, "hop_s": 0.5},
        "engine": {"steps": 2, "candidates": 2},
        "publisher": {"endpoint": f"ipc://{sock}", "device_id": "clean", "heartbeat_s": 0.2},
    })
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.is_socket() and lock.is_file()  # while it runs
        assert child.wait(60) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert "Traceback" not in child.stderr.read()
    assert not sock.exists() and not lock.exists()

    code = (f"import time\nfrom edge_dac.daemon.publisher import Publisher\nPublisher('ipc://{sock}', 'crash')\n"
            "print('bound', flush=True)\ntime.sleep(60)\n")
    crashed = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert crashed.stdout.readline().strip() == "bound"
    finally:
        crashed.kill()
        crashed.wait(10)
    assert sock.exists() and lock.exists()  # left behind by the crash
    Publisher(f"ipc://{sock}", "after-crash").close()
    assert not sock.exists() and not lock.exists()


# -- 2. --fast: audio times on the sample clock, latency from completion, never negative -------------------


def unix_time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_fast_run_latency_is_never_negative_and_audio_times_stay_on_the_sample_clock(tmp_path):
    """``edge-dac run --fast`` with the shipped model on 20 s of demo scenes: the file is read much
    faster than real time, so the sample clock runs ahead of the wall clock (audio.end after sent_at,
    as documented); latency_ms counted from that clock went down to -324 s. Now it counts from when the
    window was complete in the process: never negative, and never more than the run took."""
    scenes = sorted((ROOT / "edge_dac" / "assets" / "demo").glob("*.flac"))[:2]
    audio = tmp_path / "two-scenes.flac"
    soundfile.write(str(audio), np.concatenate([soundfile.read(str(p), dtype="float32")[0] for p in scenes]), RATE)
    endpoint = f"ipc://{tmp_path}/captions.sock"
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        # The fastest engine, and a short queue: at the end of the file the daemon drains the queue
        # for at most 3 s (run.DRAIN_S) and drops the rest (counted).
        "engine": {"threads": 1, "steps": 2, "candidates": 2},
        "worker": {"queue_size": 2, "max_batch": 2},
        "windows": {"silence_dbfs": None},
        "publisher": {"device_id": "fast", "heartbeat_s": 0.2},
    }))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_dac", "run", "--config", str(config), "--source", f"file:{audio}", "--fast",
         "--endpoint", endpoint], env=env, stderr=subprocess.PIPE, text=True,
    )
    started = time.time()
    try:
        bodies = raw_messages(endpoint, child, 240)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    took = time.time() - started
    stderr = child.stderr.read()
    assert child.returncode == 0, stderr
    messages = [strict_json(body) for body in bodies]
    captions = [m for m in messages if m["type"] == "caption"]
    # Windows at 0, 2, ..., 10 s of the 20 s file; the last may be dropped when the engine needs more
    # than the drain time at the end of the file (counted in windows.dropped).
    assert len(captions) >= 4, stderr
    anchor = unix_time(next(m for m in messages if m["type"] == "status" and m["audio"])["audio"]["start"])
    for caption in captions:
        k = caption["audio"]["start_sample"] // (2 * RATE)
        assert caption["audio"]["start_sample"] == k * 2 * RATE
        # On the sample clock: exactly the anchor plus the sample index over the rate (to the microsecond).
        assert abs(unix_time(caption["audio"]["start"]) - (anchor + 2.0 * k)) < 2e-6
        assert abs(unix_time(caption["audio"]["end"]) - (anchor + 2.0 * k + 10.0)) < 2e-6
        assert 0 <= caption["latency_ms"] <= took * 1000
    events = [m for m in messages if m["type"] == "event" and m["latency_ms"] is not None]
    assert all(0 <= m["latency_ms"] <= took * 1000 for m in events)
    assert all(m["latency_ms"] is None or m["latency_ms"] >= 0 for m in messages if m["type"] == "status")
    # It really ran faster than real time: the last window ends on the sample clock after it was sent.
    assert unix_time(captions[-1]["audio"]["end"]) > unix_time(captions[-1]["sent_at"])


# -- 4. audio times stay tied to the wall clock when the device's rate is a little off ---------------------


def simulate(
    clock: AudioClock, device_hz: float, seconds: float, block_s: float = 0.25, seed: int = 0,
    step: tuple[float, float] | None = None, rate_limit: float = 2000e-6,
):
    """Feed ``clock`` blocks from a device delivering ``device_hz`` samples a second, arriving with the
    delays a loaded machine adds (exponential, 2 ms mean; 1 % of blocks 20-300 ms late); ``step``
    (at seconds, by seconds) moves every arrival from then on, as an audio server that re-buffers
    does. Returns, per block, (the clock's time of the block's end - the true time of that sample,
    the naive sample clock's time - the true time, the clock's time of the block's end when it
    arrived, the measured drift in ppm), and checks that the clock never goes back or jumps."""
    rng = np.random.default_rng(seed)
    block, errors, naive, given, drifts, previous = int(block_s * RATE), [], [], [], [], -math.inf
    for k in range(int(seconds / block_s)):
        start, end = k * block, (k + 1) * block
        true_end = clock.anchor_time + end / device_hz
        if step is not None and end / RATE >= step[0]:
            true_end += step[1]
        delay = rng.exponential(0.002) + (rng.uniform(0.02, 0.3) if rng.random() < 0.01 else 0.0)
        clock.observe(start, end, true_end + delay)
        begins = clock.time_of(start)
        # Continuous and increasing: the block starts where the last one ended (within rounding) ...
        assert begins >= previous - 1e-9 and (previous == -math.inf or abs(begins - previous) < 1e-6)
        previous = clock.time_of(end)
        # ... and lasts its nominal length within the rate limit (2000 ppm): no jumps.
        assert abs((previous - begins) / block_s - 1) <= rate_limit + 1e-9
        errors.append(previous - true_end)
        naive.append(clock.anchor_time + end / RATE - true_end)
        given.append(previous)
        drifts.append(clock.drift_ppm)
    return np.array(errors), np.array(naive), given, drifts


@pytest.mark.parametrize("ppm", [50.0, -80.0])
def test_a_day_of_a_drifting_microphone_on_a_simulated_clock(ppm):
    """A day of audio cannot run in a test, so the arrivals come from a simulated clock: the clock
    under test only ever sees (samples, arrival time) pairs, which is all a real device gives it.
    A 50 ppm microphone would put naive timestamps 4.3 s off after 24 h; here they stay within a few
    milliseconds of the truth (the arrival floor), the published times never jump, and the measured
    drift is the device's (its mean over the last 12 hours; any one reading is within a few ppm, as
    the arrival delays jitter it)."""
    clock = AudioClock(RATE, 1_700_000_000.0, disciplined=True)
    errors, naive, given, drifts = simulate(clock, RATE * (1 + ppm * 1e-6), 24 * 3600, block_s=1.0)
    assert abs(naive[-1]) == pytest.approx(abs(ppm) * 1e-6 * 24 * 3600, rel=1e-3)  # 4.32 s for 50 ppm
    # One block a second, so the clock settles on the typical arrival delay (2 ms), not the floor.
    assert np.abs(errors).max() < 0.010
    assert np.abs(errors[len(errors) // 10 :]).max() < 0.005 and np.abs(errors[len(errors) // 10 :]).mean() < 0.003
    assert np.mean(drifts[len(drifts) // 2 :]) == pytest.approx(ppm, abs=0.5)
    assert np.abs(np.array(drifts[len(drifts) // 2 :]) - ppm).max() < 10.0
    # A timestamp once given out never changes (the last 50 minutes read exactly as when published);
    # older breakpoints are merged, which moves earlier hours by a few milliseconds at most.
    assert all(clock.time_of((k + 1) * RATE) == given[k] for k in range(len(given) - 3000, len(given)))
    assert max(abs(clock.time_of((k + 1) * RATE) - given[k]) for k in range(0, len(given), 60)) < 0.005


@pytest.mark.parametrize("step_s", [-0.054, -0.3, 0.054])
def test_a_step_of_the_arrivals_is_slewed_out_in_seconds_without_winding_up_the_drift(step_s):
    """An audio server that re-buffers moves every arrival at once (PulseAudio's null sink by ~55 ms
    when a player connects). Arrivals earlier than the clock (step < 0) prove it ahead, since no sample
    arrives before it was recorded: taken back within seconds (a loop fed the step took 2-9 minutes
    and wound its drift up to 260-770 ppm, an overshoot after). Later arrivals (step > 0) may be a
    stall, so they are slewed out only once they persisted. Times stay continuous and increasing, the
    rate within the loop's limit plus the slew's."""
    clock = AudioClock(RATE, 1_700_000_000.0, disciplined=True)
    errors, _, _, drifts = simulate(clock, RATE, 600, block_s=0.064, step=(120.0, step_s), rate_limit=0.012)
    seconds = np.arange(1, len(errors) + 1) * 0.064
    after = seconds >= 120.0
    off = np.abs(errors)  # against the true times, which moved with the arrivals
    settle = 15.0 + abs(step_s) / 0.01 * 2  # 10 ms a second, every other update (+10 s when behind)
    assert off[after & (seconds > 120.0 + settle)].max() < 0.005
    assert errors[after].max() < max(-step_s, 0.0) + 0.005  # never further ahead than the step put it
    assert np.abs(np.array(drifts[len(drifts) // 10 :])).max() < 30.0
    assert off[-len(off) // 4 :].max() < 0.003


def test_undisciplined_clock_is_the_plain_sample_clock():
    """--fast files: no discipline, exactly anchor + sample / rate, no drift reported."""
    clock = AudioClock(RATE, 1_700_000_000.0, disciplined=False)
    simulate_errors, _, _, _ = simulate(clock, RATE * 1.0005, 60)
    assert clock.time_of(RATE * 600) == 1_700_000_000.0 + 600.0
    assert clock.drift_ppm is None
    assert simulate_errors[-1] > 0.029  # it drifts, as it should when nothing paces the source


def test_file_played_500_ppm_fast_keeps_published_audio_times_on_the_wall_clock(tmp_path):
    """A real daemon on a file handed out at 16,008 samples per wall second while it says 16 kHz (a
    microphone 500 ppm fast), at real time for 32 s. The true time of sample n is anchor + n / 16008
    (the file source hands it out then); a naive sample clock would be 16 ms ahead by the end. The
    published status audio.end stays within a few ms, never goes back, and drift_ppm is measured."""
    pace = 16008.0
    silence = tmp_path / "silence.flac"
    soundfile.write(str(silence), np.zeros(int(32 * RATE), np.float32), RATE)  # silent: the engine idles
    endpoint = f"ipc://{tmp_path}/captions.sock"
    child = start_child(tmp_path, {
        "source": {"kind": "file", "path": str(silence), "pace_hz": pace},
        "windows": {"length_s": 1.0, "hop_s": 0.5},
        "engine": {"steps": 1, "candidates": 1},
        "publisher": {"endpoint": endpoint, "device_id": "drift", "heartbeat_s": 0.5},
    })
    try:
        bodies = raw_messages(endpoint, child, 180)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    stderr = child.stderr.read()
    assert child.returncode == 0, stderr
    statuses = [strict_json(b) for b in bodies]
    statuses = [m for m in statuses if m["type"] == "status" and m["audio"] and m["state"] != "offline"]
    anchor = unix_time(statuses[0]["audio"]["start"])
    ends = [(m["audio"]["end_sample"], unix_time(m["audio"]["end"]), m["drift_ppm"]) for m in statuses]
    assert ends[-1][0] >= 30 * RATE, stderr
    assert all(b[1] > a[1] for a, b in zip(ends, ends[1:], strict=False) if b[0] > a[0])  # monotonic
    late = [(n, t, drift) for n, t, drift in ends if n >= 24 * RATE]
    for n, published, _ in late:
        true = anchor + n / pace
        naive = anchor + n / RATE
        assert naive - true > 0.011  # what the old clock would have published: ahead by 12-16 ms
        assert abs(published - true) < 0.006, (n, published - true)
    drifts = [drift for _, _, drift in late]
    assert all(d is not None for d in drifts) and 250 < drifts[-1] < 700, drifts
