"""The documented Python subscriber (examples/subscriber.py, shown in docs/subscribing.md) against a
real publisher on a real socket: it prints captions, event starts, state changes and lost messages."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path

from edge_dac.daemon.messages import topic
from edge_dac.daemon.publisher import Publisher
from tests.test_daemon_support import caption_body, event_body, free_tcp_endpoint, status_body

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "subscriber.py"


def read_line(process: subprocess.Popen, stream, timeout_s: float) -> str | None:
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    ready = selector.select(timeout_s)
    selector.close()
    return stream.readline().strip() if ready else None


def test_example_subscriber_prints_captions_events_states_and_gaps():
    endpoint = free_tcp_endpoint()
    publisher = Publisher(endpoint, "kitchen")
    example = subprocess.Popen([sys.executable, str(EXAMPLE), endpoint], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        # Status until the subscription is through (ZeroMQ's slow joiner); only the first one prints.
        deadline, first = time.monotonic() + 10, None
        while first is None and time.monotonic() < deadline:
            publisher.publish("status", status_body("running"))
            first = read_line(example, example.stdout, 0.1)
        assert first == "daemon running, file healthy"
        publisher.publish("status", status_body("running"))  # unchanged state: nothing printed
        publisher.publish("caption", caption_body(0, "a dog barks twice"))
        assert read_line(example, example.stdout, 5) == "2023-11-14T22:13:20.000000Z a dog barks twice (-0.50)"
        publisher.publish("event", event_body("start"))
        assert read_line(example, example.stdout, 5) == "2023-11-14T22:13:20.000000Z event start: a dog barks twice"
        publisher.publish("event", event_body("update"))  # updates are not printed
        # A message lost on the way: the publisher's sequence for the caption topic skips two.
        publisher._seq[topic("caption", "kitchen")] += 2
        publisher.publish("caption", caption_body(32000, "rain falls"))
        assert read_line(example, example.stderr, 5) == "edge-dac/v1/caption/kitchen: lost 2 message(s)"
        assert read_line(example, example.stdout, 5).endswith("rain falls (-0.50)")
        publisher.publish("status", status_body("offline"))
        assert read_line(example, example.stdout, 5) == "daemon offline, file healthy"
    finally:
        example.kill()
        example.wait()
        publisher.close()


def test_docs_show_the_example_as_it_is():
    """docs/subscribing.md embeds examples/subscriber.py; this keeps the two from drifting apart."""
    code = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert code in (ROOT / "docs" / "subscribing.md").read_text()
