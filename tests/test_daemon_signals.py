"""SIGTERM and SIGINT at any moment end ``edge-dac run`` with status 0 within 5 s: real signals sent
to the real command (a child process) while its engine is being built, while it captions, and after
its file source ended, when the process is on its way out.

The model is a tiny random one (tests/factories.py) saved as a checkpoint: what it writes is beside
the point, only the process's life is asserted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from edge_dac.daemon.listen import Subscriber
from edge_dac.model import save_captioner
from tests.factories import tiny_captioner

ROOT = Path(__file__).resolve().parents[1]
STOP_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_captioner(tiny_captioner("dac", seconds=2.0), tmp_path_factory.mktemp("model") / "tiny")


def start_daemon(
    tmp_path: Path, model_dir: Path, *, seconds: float, loop: bool, backend: str = "eager", log_level: str = "INFO"
):
    """``edge-dac run`` on a noise file; returns (process, endpoint, stderr log path)."""
    audio = tmp_path / "noise.flac"
    rng = np.random.default_rng(0)
    soundfile.write(audio, (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32), 16000)
    config = tmp_path / "daemon.yaml"
    endpoint = f"ipc://{tmp_path}/captions.sock"
    config.write_text(yaml.safe_dump({
        "source": {"kind": "file", "path": str(audio), "loop": loop},
        "windows": {"hop_s": 1.0},
        "engine": {"backend": backend, "steps": 2, "candidates": 2, "threads": 1},
        "publisher": {"endpoint": endpoint, "device_id": "signals", "heartbeat_s": 0.2},
    }))
    log = tmp_path / "daemon.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGE_DAC_ENGINES": str(tmp_path / "engines")}
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "edge_dac", "--log-level", log_level, "run", "--config", str(config),
             "--model", str(model_dir)],
            stderr=stderr, cwd=ROOT, env=env,
        )
    return child, endpoint, log


def wait_for_log(child: subprocess.Popen, log: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        if child.poll() is not None:
            raise AssertionError(f"exited with {child.returncode} before {text!r}:\n{log.read_text()}")
        time.sleep(0.02)
    child.kill()
    raise AssertionError(f"no {text!r} within {timeout_s} s:\n{log.read_text()}")


def receive_until(subscriber: Subscriber, done, timeout_s: float) -> list[dict]:
    got, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        item = subscriber.receive(0.05)
        if item is not None:
            got.append(item[1])
            if done(item[1]):
                break
    return got


def is_offline(message: dict) -> bool:
    return message["type"] == "status" and message["state"] == "offline"


def test_sigterm_while_the_engine_builds_exits_0(tmp_path, model_dir):
    """An ONNX Runtime engine built from scratch (a fresh engine cache) takes seconds; the SIGTERM
    lands in the middle of it, before any daemon exists (it used to kill the process: status 143)."""
    pytest.importorskip("onnxruntime")
    child, _, log = start_daemon(tmp_path, model_dir, seconds=4, loop=True, backend="onnxruntime")
    try:
        wait_for_log(child, log, "building the onnxruntime", 180)
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        child.wait(STOP_WITHIN_S + 1)
        elapsed = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    text = log.read_text()
    assert child.returncode == 0, text
    assert elapsed < STOP_WITHIN_S and "SIGTERM during start-up: exiting" in text
    assert "Traceback" not in text, text


def test_sigterm_while_the_modules_import_is_logged_in_the_daemons_format(tmp_path, model_dir):
    """The handlers are installed before torch is imported (seconds): a SIGTERM then used to be
    logged in loguru's default format ("2026-12-01 23:10:14.110 | INFO | edge_dac.daemon...")
    because the daemon's log format was set only after the sub-command modules were imported."""
    child, _, log = start_daemon(tmp_path, model_dir, seconds=4, loop=True, log_level="DEBUG")
    try:
        wait_for_log(child, log, "signal handlers installed", 60)
        child.send_signal(signal.SIGTERM)
        child.wait(STOP_WITHIN_S + 1)
    finally:
        if child.poll() is None:
            child.kill()
    text = log.read_text()
    assert child.returncode == 0, text
    line = next(line for line in text.splitlines() if "SIGTERM during start-up" in line)
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO +SIGTERM during start-up: exiting \(status 0\)", line), line
    assert "building the" not in text  # it landed before the engine, while modules were importing


def test_sigint_while_captioning_publishes_offline_and_exits_0(tmp_path, model_dir):
    child, endpoint, log = start_daemon(tmp_path, model_dir, seconds=4, loop=True)
    subscriber = Subscriber(endpoint)
    try:
        got = receive_until(subscriber, lambda m: m["type"] == "caption", 120)
        assert any(m["type"] == "caption" for m in got), log.read_text()
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        got = receive_until(subscriber, is_offline, STOP_WITHIN_S + 1)
        child.wait(STOP_WITHIN_S + 1)
        elapsed = time.monotonic() - sent
    finally:
        subscriber.close()
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, log.read_text()
    assert elapsed < STOP_WITHIN_S and any(is_offline(m) for m in got)


def test_sigterm_after_the_file_ended_while_the_process_exits_still_exits_0(tmp_path, model_dir):
    """A non-looping file: the daemon publishes offline and returns 0, then the interpreter shuts
    down (torch, threads). SIGTERM is sent every few milliseconds from the offline status until the
    process is gone, so some land after the daemon returned (the default handler used to be back
    by then: status 143)."""
    child, endpoint, log = start_daemon(tmp_path, model_dir, seconds=3, loop=False)
    subscriber = Subscriber(endpoint)
    sent = 0
    try:
        got = receive_until(subscriber, is_offline, 120)
        assert any(is_offline(m) for m in got), log.read_text()
        assert any(m["type"] == "caption" for m in got)
        deadline = time.monotonic() + STOP_WITHIN_S
        while child.poll() is None and time.monotonic() < deadline:
            child.send_signal(signal.SIGTERM)
            sent += 1
            time.sleep(0.003)
        child.wait(1)
    finally:
        subscriber.close()
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, f"status {child.returncode} after {sent} SIGTERM(s):\n{log.read_text()}"
    assert sent >= 1
