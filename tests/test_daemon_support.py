"""Shared helpers for the daemon tests (no tests here): real sockets, real message bodies."""

from __future__ import annotations

import socket
import time

from edge_dac.daemon import messages
from edge_dac.daemon.listen import Subscriber
from edge_dac.daemon.publisher import Publisher
from edge_dac.daemon.windows import SampleClock

CLOCK = SampleClock(sample_rate=16000, anchor_time=1_700_000_000.0)


def free_tcp_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def caption_body(start_sample: int = 0, text: str = "a dog barks twice") -> dict:
    return messages.caption_body(
        messages.audio_span(CLOCK, start_sample, start_sample + 160_000),
        [(text, -0.5), ("a dog is barking", -0.9)],
        latency_ms=42.0,
        processing_ms=30.5,
        model_id="dac-tiny-test",
        backend="cpu",
        steps=10,
        event_id="e1",
    )


def event_body(phase: str = "start") -> dict:
    return messages.event_body(
        phase, "e1", messages.audio_span(CLOCK, 0, 192_000), caption="a dog barks twice", labels=["dog"],
        windows=2, latency_ms=12.0, model_id="dac-tiny-test", backend="cpu",
    )


def status_body(state: str = "running") -> dict:
    return messages.status_body(
        state=state,
        uptime_s=3.0,
        source={"kind": "file", "name": "scene.flac", "state": "healthy", "overflows": 0, "reopens": 0},
        windows={"captioned": 1, "dropped": 0, "silent": 0, "queued": 0, "failed": 0},
        real_time_factor=0.1,
        audio=messages.audio_span(CLOCK, 0, 48_000),
        latency_ms=42.0,
        silent=False,
        model_id="dac-tiny-test",
        backend="cpu",
        drift_ppm=12.5,
    )


def connect_until_flowing(publisher: Publisher, subscriber: Subscriber, timeout_s: float = 5.0) -> None:
    """ZeroMQ subscriptions take a moment to reach the publisher: send status until one arrives,
    then drain, so the test's own messages start from a known point."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        publisher.publish("status", status_body())
        if subscriber.receive(0.05) is not None:
            while subscriber.receive(0.1) is not None:
                pass
            return
    raise AssertionError("subscriber never connected")
