"""``edge-dac listen``: subscribe to a daemon and print its captions as they come.

Readable lines by default (captions, event starts and ends, status changes), or every message as
one JSON line with ``--json``. Sequence gaps are reported, and so is a silent daemon: the daemon
sends a status heartbeat every second, so a few seconds without any message means it is not
running or not reachable, which is different from a quiet room. The heartbeats are received even
when ``--topic`` asks for something narrower (``event`` in a quiet room may print nothing for
hours): they prove the daemon is alive, and only what was asked for is printed.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import zmq
import zmq.auth

from edge_dac.daemon.messages import TOPIC_ROOT
from edge_dac.errors import ConfigError

SILENCE_WARNING_S = 3.0


class Subscriber:
    """A SUB socket on ``endpoint`` for topics starting with any of ``topics``."""

    def __init__(
        self,
        endpoint: str,
        topics: tuple[str, ...] = (f"{TOPIC_ROOT}/",),
        *,
        server_key: str | Path | None = None,
        client_key: str | Path | None = None,
    ):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        if server_key is not None or client_key is not None:
            self._enable_curve(server_key, client_key)
        for prefix in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self.socket.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)

    def _enable_curve(self, server_key: str | Path | None, client_key: str | Path | None) -> None:
        if server_key is None or client_key is None:
            raise ConfigError("CURVE needs both --server-key (daemon's .key) and --client-key (your .key_secret)")
        for path in (server_key, client_key):
            if not Path(path).is_file():
                raise ConfigError(f"{path}: key file not found; create keys with 'edge-dac keys'")
        server_public, _ = zmq.auth.load_certificate(server_key)
        client_public, client_secret = zmq.auth.load_certificate(client_key)
        if client_secret is None:
            raise ConfigError(f"{client_key}: holds only a public key; pass your .key_secret file")
        self.socket.curve_serverkey = server_public
        self.socket.curve_publickey = client_public
        self.socket.curve_secretkey = client_secret

    def receive(self, timeout_s: float) -> tuple[str, dict[str, Any]] | None:
        """The next ``(topic, message)``, or None if nothing came within ``timeout_s``."""
        if not self.poller.poll(int(timeout_s * 1000)):
            return None
        topic, body = self.socket.recv_multipart()
        return topic.decode(), json.loads(body)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def _clock(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")


def format_message(message: dict[str, Any], last_status: dict[str, Any] | None = None) -> str | None:
    """One readable line, or None for a heartbeat that says nothing new."""
    device = message["device"]
    kind = message["type"]
    if kind == "caption":
        audio = message["audio"]
        return f"{_clock(audio['start'])}-{_clock(audio['end'])} [{device}] {message['caption']}"
    if kind == "event":
        audio = message["audio"]
        if message["phase"] == "update":
            return None
        seconds = (audio["end_sample"] - audio["start_sample"]) / audio["sample_rate"]
        extent = f" ({seconds:.1f} s, {message['windows']} windows)" if message["phase"] == "end" else ""
        return f"{_clock(audio['start'])} [{device}] event {message['phase']}: {message['caption']}{extent}"
    changed = last_status is None or any(
        message[key] != last_status[key] for key in ("state", "backend")
    ) or message["source"]["state"] != last_status["source"]["state"]
    if not changed:
        return None
    source = message["source"]
    return (
        f"[{device}] {message['state']}: source {source['kind']} '{source['name']}' {source['state']}, "
        f"model {message['model_id']} on {message['backend']}"
    )


def topic_prefixes(topic: str | None) -> tuple[str, str | None]:
    """(the prefix to print, the status prefix to receive as well, or None when the first covers it).

    ``event`` -> ``edge-dac/v1/event`` and ``edge-dac/v1/status/``; ``caption/kitchen`` -> the
    kitchen's captions and the kitchen's status.
    """
    root = f"{TOPIC_ROOT}/"
    wanted = root if not topic else topic if topic.startswith(TOPIC_ROOT) else root + topic.lstrip("/")
    device = wanted[len(root):].partition("/")[2] if wanted.startswith(root) else ""
    alive = f"{root}status/{device}"
    return wanted, None if alive.startswith(wanted) else alive


def listen(
    endpoint: str,
    *,
    topic: str | None = None,
    as_json: bool = False,
    count: int | None = None,
    timeout_s: float | None = None,
    server_key: str | None = None,
    client_key: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print messages until ``count`` were printed or ``timeout_s`` passed; 1 if nothing (not even a
    heartbeat) arrived."""
    wanted, alive = topic_prefixes(topic)
    topics = (wanted,) if alive is None else (wanted, alive)
    subscriber = Subscriber(endpoint, topics, server_key=server_key, client_key=client_key)
    last_seq: dict[str, int] = {}
    last_status: dict[str, dict[str, Any]] = {}
    printed = received = 0
    started = last_message = time.monotonic()
    warned = False
    try:
        while count is None or printed < count:
            if timeout_s is not None and time.monotonic() - started >= timeout_s:
                break
            item = subscriber.receive(0.25)
            if item is None:
                if not warned and time.monotonic() - last_message > SILENCE_WARNING_S:
                    print(f"no messages from {endpoint} for {SILENCE_WARNING_S:.0f} s: daemon not running, "
                          "not reachable, or not authorised", file=err, flush=True)
                    warned = True
                continue
            name, message = item
            received += 1
            last_message, warned = time.monotonic(), False
            if not name.startswith(wanted):  # a heartbeat received only as proof of life
                if message["type"] == "status" and message["state"] == "offline":
                    print(f"[{message['device']}] daemon stopped (offline)", file=err, flush=True)
                continue
            if name in last_seq and message["seq"] != last_seq[name] + 1:
                missed = message["seq"] - last_seq[name] - 1
                note = f"missed {missed} message(s)" if missed > 0 else "sequence restarted (daemon restarted)"
                print(f"{name}: {note}", file=err, flush=True)
            last_seq[name] = message["seq"]
            if as_json:
                line = json.dumps(message, ensure_ascii=False)
            else:
                line = format_message(message, last_status.get(name))
                if message["type"] == "status":
                    last_status[name] = message
            if line is not None:
                print(line, file=out, flush=True)
                printed += 1
    finally:
        subscriber.close()
    return 0 if received else 1
