"""The published message format (contract: ``edge_dac/schemas/messages.schema.json``).

Every message is a ZeroMQ multipart ``[topic, json]``. The topic is
``edge-dac/v1/<type>/<device>`` so a subscriber can filter by prefix (all of one type, or one
device). The JSON body always carries the envelope (``schema_version``, ``type``, ``seq``,
``device``, ``sent_at``) filled in by the publisher, plus the fields built here.
``seq`` counts per topic: a subscriber to one topic sees 0, 1, 2, ... and any jump is a loss.
Changing a field here means changing the schema and its version: subscribers rely on both.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from edge_dac.daemon.clock import AudioClock
from edge_dac.daemon.windows import SampleClock

SCHEMA_VERSION = 1
TOPIC_ROOT = f"edge-dac/v{SCHEMA_VERSION}"
MESSAGE_TYPES = ("caption", "event", "status")
EVENT_PHASES = ("start", "update", "end")


def topic(message_type: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{message_type}/{device}"


def encode(message: dict[str, Any]) -> bytes:
    """The JSON body as sent: strict JSON (RFC 8259), which every parser accepts (Node's ``JSON.parse``,
    Go's ``encoding/json``, ...). Python writes ``NaN``/``Infinity`` unless told not to, and those are
    not JSON: a non-finite number raises ``ValueError`` here instead of reaching a subscriber."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def load_schema() -> dict[str, Any]:
    return json.loads(resources.files("edge_dac").joinpath("schemas/messages.schema.json").read_text())


def audio_span(clock: AudioClock | SampleClock, start_sample: int, end_sample: int) -> dict[str, Any]:
    """Where the audio sits, both as wall-clock time (from the audio clock) and as sample indexes."""
    return {
        "start": clock.iso(start_sample),
        "end": clock.iso(end_sample),
        "start_sample": int(start_sample),
        "end_sample": int(end_sample),
        "sample_rate": int(clock.sample_rate),
    }


def caption_body(
    audio: dict[str, Any],
    candidates: list[tuple[str, float]],
    *,
    latency_ms: float,
    processing_ms: float,
    model_id: str,
    backend: str,
    steps: int,
    event_id: str | None,
) -> dict[str, Any]:
    """One captioned window; ``candidates`` are best first, the first is also ``caption``."""
    best_caption, best_score = candidates[0]
    return {
        "audio": audio,
        "caption": best_caption,
        "score": float(best_score),
        "candidates": [{"caption": text, "score": float(score)} for text, score in candidates],
        "latency_ms": round(float(latency_ms), 3),
        "processing_ms": round(float(processing_ms), 3),
        "model_id": model_id,
        "backend": backend,
        "steps": int(steps),
        "event_id": event_id,
    }


def event_body(
    phase: str,
    event_id: str,
    audio: dict[str, Any],
    *,
    caption: str,
    labels: list[str],
    windows: int,
    latency_ms: float | None,
    model_id: str,
    backend: str,
) -> dict[str, Any]:
    """An event's ``start``, ``update`` (it goes on) or ``end``; ``audio`` spans the whole event so far."""
    return {
        "phase": phase,
        "event_id": event_id,
        "audio": audio,
        "caption": caption,
        "labels": sorted(labels),
        "windows": int(windows),
        "latency_ms": None if latency_ms is None else round(float(latency_ms), 3),
        "model_id": model_id,
        "backend": backend,
    }


def status_body(
    *,
    state: str,
    uptime_s: float,
    source: dict[str, Any],
    windows: dict[str, int],
    real_time_factor: float | None,
    audio: dict[str, Any] | None,
    latency_ms: float | None,
    silent: bool | None,
    model_id: str,
    backend: str,
    error: str | None = None,
    drift_ppm: float | None = None,
) -> dict[str, Any]:
    """The heartbeat: enough for a late subscriber to know at once whether the daemon is well.

    ``error``: why the latest voiced window got no caption (None while captions come). ``drift_ppm``:
    the audio device's measured rate error (None when not measured: ``--fast``, the first second)."""
    return {
        "state": state,
        "uptime_s": round(float(uptime_s), 3),
        "source": source,
        "windows": windows,
        "real_time_factor": None if real_time_factor is None else round(float(real_time_factor), 4),
        "audio": audio,
        "latency_ms": None if latency_ms is None else round(float(latency_ms), 3),
        "silent": silent,
        "error": error,
        "drift_ppm": None if drift_ppm is None else round(float(drift_ppm), 2),
        "model_id": model_id,
        "backend": backend,
    }
