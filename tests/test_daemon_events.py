"""Event merging, sd_notify over a real datagram socket, and config validation."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_dac.config import load_yaml
from edge_dac.daemon.config import DaemonConfig, load_daemon_config, parse_source
from edge_dac.daemon.events import EventTracker, make_agreement
from edge_dac.daemon.notify import Notifier
from edge_dac.errors import ConfigError

HOP, LENGTH = 2, 10


def run(tracker: EventTracker, captions: list[str | None]) -> list[tuple[str, str, int, int]]:
    """Feed windows (None = silent); return (phase, id, start, end) of every change."""
    out = []
    for i, caption in enumerate(captions):
        start = i * HOP
        changes = tracker.observe_silence() if caption is None else tracker.observe(start, start + LENGTH, caption)
        out += [(c.phase, c.event.event_id, c.event.start_sample, c.event.end_sample) for c in changes]
    return out + [(c.phase, c.event.event_id, c.event.start_sample, c.event.end_sample) for c in tracker.close()]


def test_agreeing_windows_merge_into_one_event_with_a_stable_id():
    tracker = EventTracker(make_agreement(), id_prefix="dev-")
    changes = run(tracker, ["A dog barks.", "a dog barks", "rain falls"])
    assert changes == [
        ("start", "dev-0", 0, 10),
        ("update", "dev-0", 0, 12),
        ("end", "dev-0", 0, 12),
        ("start", "dev-4", 4, 14),
        ("end", "dev-4", 4, 14),
    ]


def test_silence_ends_an_event_and_hysteresis_bridges_one_odd_window():
    assert [c[0] for c in run(EventTracker(make_agreement()), ["dog", None, "dog"])] == [
        "start", "end", "start", "end"
    ]
    bridged = run(EventTracker(make_agreement(), end_after=2), ["dog", "cat", "dog", None, None])
    assert [c[:2] for c in bridged] == [("start", "0"), ("update", "0"), ("end", "0")]
    assert bridged[-1][3] == 4 + LENGTH  # ends with the last agreeing window


def test_gap_in_the_audio_ends_the_event():
    tracker = EventTracker(make_agreement())
    tracker.observe(0, 10, "dog")
    changes = tracker.observe(50, 60, "dog")  # windows 12..48 never arrived (device lost)
    assert [c.phase for c in changes] == ["end", "start"]


def test_label_agreement_ignores_wording():
    lexicon = {"dog": {"dog"}, "puppy": {"dog"}, "rain": {"rain"}}

    def labels_of(caption: str) -> set[str]:
        return set().union(*(labels for word, labels in lexicon.items() if word in caption))

    agree = make_agreement(labels_of=labels_of)
    assert agree("a dog barks", "a puppy yaps")
    assert not agree("a dog barks", "a dog barks in the rain")
    tracker = EventTracker(agree, labels_of=labels_of)
    changes = [c for caption in ("a dog barks", "a puppy yaps") for c in tracker.observe(0, 10, caption)]
    assert [c.phase for c in changes] == ["start", "update"] and changes[-1].event.labels == {"dog"}


def test_without_labels_captions_agree_on_their_words_only():
    agree = make_agreement()
    assert agree("A dog barks.", "a dog  barks") and not agree("a dog barks", "a dog barked")


def test_notifier_sends_datagrams_to_notify_socket(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "notify"))
    server.settimeout(2)
    notifier = Notifier(str(tmp_path / "notify"))
    notifier.ready("captioning mic")
    notifier.watchdog()
    notifier.watchdog()  # rate-limited: only one datagram
    notifier.stopping()
    received = [server.recv(4096).decode() for _ in range(3)]
    assert received == ["READY=1\nSTATUS=captioning mic", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]
    notifier.close()
    server.close()
    Notifier("").ready("outside systemd: nothing happens")


def test_shipped_config_is_the_defaults():
    assert load_daemon_config(Path(__file__).resolve().parents[1] / "configs" / "daemon.yaml") == DaemonConfig()


def test_an_old_config_with_events_similarity_still_loads(tmp_path):
    old = tmp_path / "daemon.yaml"
    old.write_text("events:\n  end_after: 2\n  similarity: 0.8\n")
    assert load_daemon_config(old).events.model_dump() == {"end_after": 2}


def test_a_key_given_twice_is_refused_with_its_name_and_line(tmp_path):
    """Plain YAML keeps the last of two equal keys without a word; a config must not."""
    twice = tmp_path / "daemon.yaml"
    twice.write_text("windows:\n  hop_s: 2.0\nengine:\n  steps: 4\n  candidates: 2\n  steps: 8\n")
    with pytest.raises(ConfigError, match=r"daemon.yaml: duplicate key 'steps' at line 6 \(first at line 4\)"):
        load_daemon_config(twice)
    twice.write_text("windows:\n  hop_s: 2.0\nengine:\n  steps: 4\nwindows:\n  hop_s: 1.0\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'windows' at line 5 \(first at line 1\)"):
        load_daemon_config(twice)
    # A YAML merge key (<<) that a later key overrides is not a duplicate.
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {steps: 3, candidates: 2}\nengine:\n  <<: *b\n  steps: 5\n")
    assert load_yaml(merged)["engine"] == {"steps": 5, "candidates": 2}
    # Through the command line: one line, exit 2.
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "run", "--config", str(twice)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "duplicate key 'windows' at line 5" in line


def test_bad_config_keys_are_one_line(tmp_path):
    bad = tmp_path / "daemon.yaml"
    bad.write_text("windows:\n  lenght_s: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'windows.lenght_s' \(allowed keys: hop_s, length_s"):
        load_daemon_config(bad)
    bad.write_text("source:\n  kind: file\n")
    with pytest.raises(ConfigError, match="needs 'path'"):
        load_daemon_config(bad)
    with pytest.raises(ConfigError, match="expected demo, file:PATH"):
        parse_source("microphone")
    assert parse_source("mic:2") == {"kind": "mic", "device": 2}
    # Through the command line: one line, exit 2, before any engine is built.
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "run", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "needs 'path'" in result.stderr and "Traceback" not in result.stderr
