"""End to end on a real audio path: ``edge-dac run --source mic:pulse`` in a child process on the
PulseAudio virtual microphone (scripts/virtual-mic.sh), a bundled demo scene played into it with
``paplay``, and a ZeroMQ subscriber that must receive a caption naming the scene's sound events.

The model is the throwaway demo model (conftest ``demo_model``), which memorised the demo scenes'
captions. So this proves the pipeline (device, sample clock, windows, engine, publisher) delivers
the right words in time; it says nothing about how well a real model captions unseen sound.

Where the scene falls on the 2 s hop is chance: some 10 s window starts within 1 s of it. The
caption of any window that overlaps the scene by at least 8 s is accepted. The scene is the one the
demo model names exactly at every offset from -2 to +2 s (measured window by window; two other
scenes lose a word beyond about +-0.5 to 1 s), so the test does not depend on that chance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from edge_dac.daemon.listen import Subscriber
from edge_dac.lexicon import load_lexicon

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL_MIC = ROOT / "scripts" / "virtual-mic.sh"
DEMO = ROOT / "edge_dac" / "assets" / "demo"
SCENE = "scape-test-000001"  # metal clanging far away, footsteps on gravel, a blade swishing
WINDOW_S, HOP_S = 10.0, 2.0
MIN_OVERLAP_S = 8.0
DEADLINE_S = WINDOW_S + 2.0  # after the scene's end, the matching caption must have arrived
START_TIMEOUT_S = 90.0  # interpreter, torch, model load and warm-up on a busy 2-core machine


def scene(scene_id: str) -> tuple[Path, set[str], float]:
    """(audio file, event classes, duration in seconds) of a demo scene, from the demo manifest."""
    import soundfile

    for line in (DEMO / "manifest.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["id"] == scene_id:
            path = DEMO / item["audio"]
            return path, {event["class"] for event in item["events"]}, soundfile.info(str(path)).duration
    raise KeyError(scene_id)


def unix_time(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def pulse_env(tmp_path):
    """Environment of a private PulseAudio virtual microphone, for the child processes."""
    runtime = tmp_path / "pulse"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime}/pulse/native",
           "OMP_NUM_THREADS": "1"}
    subprocess.run([str(VIRTUAL_MIC), "start"], env=env, check=True, timeout=30)
    yield env
    subprocess.run([str(VIRTUAL_MIC), "stop"], env=env, timeout=30)


def receive_until(subscriber: Subscriber, done, deadline: float, daemon: subprocess.Popen, log: Path) -> list[dict]:
    """Messages (each with ``received_at``) until ``done(message)`` or the deadline; fails if the daemon dies."""
    got = []
    while time.time() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"daemon exited with {daemon.returncode}:\n{log.read_text()}")
        item = subscriber.receive(0.1)
        if item is None:
            continue
        message = {**item[1], "received_at": time.time()}
        got.append(message)
        if done(message):
            break
    return got


@pytest.mark.slow
def test_caption_of_a_scene_played_into_the_microphone(demo_model, pulse_env, tmp_path):
    audio, classes, duration = scene(SCENE)
    labels_of = load_lexicon().labels_in_caption
    endpoint = f"ipc://{tmp_path}/captions.sock"
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        "windows": {"length_s": WINDOW_S, "hop_s": HOP_S},
        "engine": {"backend": "eager", "threads": 1},
        "publisher": {"device_id": "e2e"},
    }))
    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge_dac", "run", "--config", str(config), "--source", "mic:pulse",
             "--model", str(demo_model), "--endpoint", endpoint],
            env=pulse_env, stderr=stderr, cwd=ROOT,
        )
    subscriber = Subscriber(endpoint)
    try:
        # Audio flows once the sample clock moves: the first PortAudio callback comes 0.8-1.9 s
        # after the stream starts, and anything played before it is lost.
        def audio_flows(m: dict) -> bool:
            return m["type"] == "status" and m["state"] == "running" and (m["audio"] or {}).get("end_sample", 0) > 0

        flowing = receive_until(subscriber, audio_flows, time.time() + START_TIMEOUT_S, daemon, log)
        assert flowing and audio_flows(flowing[-1]), f"no audio within {START_TIMEOUT_S} s:\n{log.read_text()}"
        assert flowing[-1]["source"] == {**flowing[-1]["source"], "kind": "mic", "state": "healthy"}

        # Measured here: the first sample of a clip lands 20-60 ms after paplay starts on the sample clock.
        player = subprocess.Popen(["paplay", "--device=vsink", str(audio)], env=pulse_env)
        scene_start = time.time()
        scene_end = scene_start + duration

        def overlap(message: dict) -> float:
            window = message["audio"]
            return min(scene_end, unix_time(window["end"])) - max(scene_start, unix_time(window["start"]))

        def matches(message: dict) -> bool:
            return (message["type"] == "caption" and overlap(message) >= MIN_OVERLAP_S
                    and labels_of(message["caption"]) == classes)

        got = receive_until(subscriber, matches, scene_end + DEADLINE_S, daemon, log)
        assert player.wait(10) == 0
    finally:
        subscriber.close()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    captions = [m for m in got if m["type"] == "caption"]
    seen = "\n".join(
        f"  window {unix_time(m['audio']['start']) - scene_start:+.2f} s, overlap {overlap(m):.1f} s, "
        f"received {m['received_at'] - scene_end:+.2f} s after the scene: {m['caption']!r} "
        f"-> {sorted(labels_of(m['caption']))}"
        for m in captions
    )
    print(f"\ncaptions of windows around {SCENE}:\n{seen}")  # shown with pytest -s
    assert any(matches(m) for m in captions), f"no caption naming {sorted(classes)}; captions:\n{seen}"
    hit = next(m for m in captions if matches(m))
    assert hit["received_at"] <= scene_end + DEADLINE_S
    assert hit["device"] == "e2e" and hit["backend"] == "eager"
    assert daemon.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
