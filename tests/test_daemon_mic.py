"""The microphone source on a real audio path: a PulseAudio virtual microphone (scripts/virtual-mic.sh),
captured through PortAudio's ALSA "pulse" device. Device loss is real too: the sound server is
killed and started again."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_dac.daemon.config import RetryConfig, SourceConfig
from edge_dac.daemon.windows import level_dbfs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "virtual-mic.sh"


def virtual_mic(action: str) -> None:
    subprocess.run([str(SCRIPT), action], check=True, timeout=30, env=os.environ.copy())


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("pulse")
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ["PULSE_SERVER"] = f"unix:{runtime}/pulse/native"
    virtual_mic("start")
    yield runtime
    virtual_mic("stop")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def mic_config(**overrides) -> SourceConfig:
    values = {"kind": "mic", "device": "pulse", "stall_s": 1.0, "retry": RetryConfig(initial_s=0.2, max_s=1.0)}
    return SourceConfig(**(values | overrides))


def wait_until(predicate, timeout_s: float, source=None) -> bool:
    """Poll ``predicate(new_blocks)``; with a source, each call gets the blocks read since the last."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = []
        if source is not None:
            if (block := source.read(0.05)) is not None:
                new.append(block)
        else:
            time.sleep(0.05)
        if predicate(new):
            return True
    return False


def play(path: Path) -> subprocess.Popen:
    return subprocess.Popen(["paplay", "--device=vsink", str(path)], env=os.environ.copy())


@pytest.fixture
def tone(tmp_path) -> Path:
    t = np.arange(16000) / 16000
    path = tmp_path / "tone.flac"
    soundfile.write(str(path), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


def test_mic_captures_what_is_played_into_it(pulse, tone):
    from edge_dac.daemon.mic import MicSource

    source = MicSource(mic_config(), 16000)
    source.start()
    try:
        blocks = []
        # The first callback arrives up to ~2 s after start: wait for audio before playing.
        assert wait_until(lambda b: blocks.extend(b) or len(blocks) > 0, 6, source), source.state
        assert source.state == "healthy" and source.anchor_time is not None
        player = play(tone)
        heard = wait_until(lambda b: blocks.extend(b) or any(level_dbfs(x.samples) > -20 for x in blocks), 6, source)
        player.wait(10)
        assert heard, "the tone never reached the microphone"
        starts = [b.start_sample for b in blocks]
        ends = [b.end_sample for b in blocks]
        assert starts[1:] == ends[:-1]  # contiguous sample clock while healthy
    finally:
        source.stop()


def test_injected_overflow_is_counted(pulse):
    """PulseAudio buffers instead of reporting input overflow, so the flag is injected into the
    real callback, the way PortAudio would pass it from a real ALSA device."""
    import sounddevice as sd

    from edge_dac.daemon.mic import MicSource

    source = MicSource(mic_config(), 16000)
    source.start()
    try:
        assert wait_until(lambda _: source.state == "healthy", 6)
        source._callback(np.zeros((160, 1), np.float32), 160, None, sd.CallbackFlags(sd._lib.paInputOverflow))
        source._callback(np.zeros((160, 1), np.float32), 160, None, sd.CallbackFlags(0))
        assert source.overflows == 1
    finally:
        source.stop()


def test_device_loss_and_recovery_without_restart(pulse):
    from edge_dac.daemon.mic import MicSource

    source = MicSource(mic_config(), 16000)
    retries = []
    source.on_retry = lambda: retries.append(time.monotonic())
    source.start()
    blocks = []
    try:
        assert wait_until(lambda b: blocks.extend(b) or len(blocks) > 2, 6, source)
        virtual_mic("stop")  # the device disappears
        assert wait_until(lambda b: blocks.extend(b) or source.state == "recovering", 5, source), source.state
        time.sleep(1.0)
        assert source.state in ("recovering", "failed") and retries  # still trying, watchdog fed
        lost_at = blocks[-1].end_sample
        virtual_mic("start")  # ... and comes back
        def resumed_after_loss(new):
            blocks.extend(new)
            return source.state == "healthy" and blocks[-1].start_sample > lost_at

        assert wait_until(resumed_after_loss, 10, source), source.state
        assert source.reopens == 1
        resumed = next(b for b in blocks if b.start_sample > lost_at)
        assert resumed.start_sample - lost_at > 16000  # the clock jumped over the outage (> 1 s)
    finally:
        source.stop()
        virtual_mic("start")


def test_absent_microphone_waits_instead_of_exiting(pulse):
    from edge_dac.daemon.mic import MicSource

    source = MicSource(mic_config(device="no-such-microphone"), 16000)
    source.start()
    try:
        time.sleep(0.8)
        assert source.state == "waiting" and source.read(0.1) is None
    finally:
        source.stop()
    assert source.state == "finished"


def test_absent_microphone_is_reported_failed_after_a_bounded_wait(pulse):
    """Not waited for forever: after retry.failed_after_s the state is "failed" with a WARNING that
    names the device and the inputs found instead, and it goes on retrying in the background."""
    from loguru import logger

    from edge_dac.daemon.mic import MicSource

    warnings = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING", format="{message}")
    retry = RetryConfig(initial_s=0.2, max_s=0.5, failed_after_s=1.5)
    source = MicSource(mic_config(device="no-such-microphone", retry=retry), 16000)
    retries = []
    source.on_retry = lambda: retries.append(time.monotonic())
    source.start()
    try:
        time.sleep(0.7)
        assert source.state == "waiting" and not warnings
        assert wait_until(lambda _: source.state == "failed", 5), source.state
        failed_at = time.monotonic()
        assert wait_until(lambda _: sum(t > failed_at for t in retries) >= 2, 5)  # still retrying
    finally:
        source.stop()
        logger.remove(sink)
    first = warnings[0]
    assert "'no-such-microphone'" in first and "reported as failed" in first, warnings
    assert "inputs:" in first and "pulse" in first  # what was found instead
    assert any("still not available" in w for w in warnings[1:])  # the background retries, at WARNING
    assert "inputs:" in source.problem and source.state == "finished"


def test_daemon_without_its_microphone_fails_visibly_and_stops_extending_its_start(pulse, tmp_path):
    """The whole daemon (a child process, sd_notify on a real socket) configured for a microphone that
    is not there: STATUS= says what it waits for while EXTEND_TIMEOUT_USEC keeps the start alive, then,
    after the bounded wait, says "failed" with the device and the inputs found, and no extension
    comes any more (they came every 10 s without end), so the unit's TimeoutStartSec= decides. The
    published status says degraded / failed; SIGTERM still ends it with status 0."""
    import signal

    import yaml

    from edge_dac.daemon.listen import Subscriber
    from tests.test_daemon_run import start_child_daemon

    endpoint, config = f"ipc://{tmp_path}/captions.sock", tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"kind": "mic", "device": "no-such-microphone",
                   "retry": {"initial_s": 0.5, "max_s": 2.0, "failed_after_s": 2.0}},
        "windows": {"length_s": 1.0, "hop_s": 0.5},
        "publisher": {"endpoint": endpoint, "device_id": "nomic", "heartbeat_s": 0.5},
    }))
    child, notify = start_child_daemon(tmp_path, config, notify_timeout_s=0.2)
    subscriber = Subscriber(endpoint)
    notes: list[tuple[float, str]] = []

    def receive_notes(until, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until():
            with contextlib.suppress(TimeoutError):
                notes.append((time.monotonic(), notify.recv(4096).decode()))

    try:
        receive_notes(lambda: any("waiting for mic" in n for _, n in notes), 180)  # interpreter, torch, warm-up
        waiting_at = next(t for t, n in notes if "waiting for mic" in n)
        receive_notes(lambda: any("STATUS=failed" in n for _, n in notes), 30)
        failed_at, failed = next((t, n) for t, n in notes if "STATUS=failed" in n)
        assert failed_at - waiting_at < 10, notes
        assert "'no-such-microphone' not found (inputs:" in failed and "pulse" in failed, failed
        receive_notes(lambda: False, 12)  # longer than the 10 s between extensions while waiting
        extensions = [t for t, n in notes if "EXTEND_TIMEOUT_USEC=" in n]
        assert extensions and all(t <= failed_at for t in extensions), notes
        assert not any(n.startswith("READY=1") for _, n in notes)
        while subscriber.receive(0.05) is not None:  # what queued up since the start
            pass
        statuses = [subscriber.receive(2)[1] for _ in range(3)]
        assert all(m["state"] == "degraded" and m["source"]["state"] == "failed" for m in statuses)
        assert statuses[-1]["source"]["name"] == "no-such-microphone"
        # Why, in the message too (not only in STATUS= and the journal): the device and the inputs found.
        assert "'no-such-microphone' not found (inputs:" in statuses[-1]["source"]["problem"], statuses[-1]
        child.send_signal(signal.SIGTERM)
        child.wait(5)
    finally:
        subscriber.close()
        notify.close()
        if child.poll() is None:
            child.kill()
        stderr = child.stderr.read()
    assert child.returncode == 0, stderr
    assert "reported as failed" in stderr and "WARNING" in stderr and "Traceback" not in stderr


def test_stable_identity_from_sysfs(tmp_path):
    """There is no ALSA card here, so a sysfs tree of the same shape stands in for one."""
    from edge_dac.daemon.mic import card_identity

    usb = tmp_path / "devices" / "usb1" / "1-1"
    interface = usb / "1-1:1.0"
    interface.mkdir(parents=True)
    for name, value in {"idVendor": "0d8c", "idProduct": "0014", "serial": "A1B2"}.items():
        (usb / name).write_text(value + "\n")
    card = tmp_path / "class" / "card1"
    card.mkdir(parents=True)
    (card / "id").write_text("Device\n")
    (card / "device").symlink_to(interface)
    assert card_identity(1, tmp_path / "class") == {"card": "Device", "usb": "0d8c:0014:A1B2"}
