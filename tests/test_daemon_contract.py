"""The message format is a contract: these tests fail when a field is added, removed or renamed.

Changing the format means bumping ``schema_version``, the topic version and these lists together.
The Node.js subscriber (examples/subscriber.js, npm ``zeromq``) proves the format and topics work
outside Python.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest

from edge_dac.daemon.messages import load_schema
from edge_dac.daemon.publisher import Publisher
from tests.test_daemon_support import caption_body, event_body, free_tcp_endpoint, status_body

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

ENVELOPE = {"schema_version", "type", "seq", "device", "sent_at", "model_id", "backend"}
FROZEN_FIELDS = {
    "caption": ENVELOPE
    | {"audio", "caption", "score", "candidates", "latency_ms", "processing_ms", "steps", "event_id"},
    "event": ENVELOPE | {"phase", "event_id", "audio", "caption", "labels", "windows", "latency_ms"},
    "status": ENVELOPE
    | {"state", "uptime_s", "source", "windows", "real_time_factor", "audio", "latency_ms", "silent"},
}
# Added within schema version 1, optional (absent in older daemons' messages, always sent now); each is
# listed in docs/subscribing.md with the change it came with.
OPTIONAL_FIELDS = {"caption": set(), "event": set(), "status": {"error", "drift_ppm"}}
OPTIONAL_WINDOW_FIELDS = {"failed"}
OPTIONAL_SOURCE_FIELDS = {"problem"}
AUDIO_FIELDS = {"start", "end", "start_sample", "end_sample", "sample_rate"}


@pytest.fixture(scope="module")
def validator():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def published_messages(tmp_path) -> list[dict]:
    publisher = Publisher(f"ipc://{tmp_path}/c.sock", "kitchen")
    try:
        return [
            publisher.publish("caption", caption_body()),
            publisher.publish("event", event_body("start")),
            publisher.publish("event", event_body("end")),
            publisher.publish("status", status_body()),
            publisher.publish("status", {**status_body("offline"), "audio": None, "latency_ms": None}),
        ]
    finally:
        publisher.close()


def test_schema_fields_are_frozen(validator):
    defs = validator.schema["$defs"]
    for kind, fields in FROZEN_FIELDS.items():
        assert set(defs[kind]["required"]) == fields, kind
        assert set(defs[kind]["properties"]) == fields | OPTIONAL_FIELDS[kind], kind
        assert defs[kind]["additionalProperties"] is False
    assert set(defs["audio"]["required"]) == AUDIO_FIELDS
    windows = defs["status"]["properties"]["windows"]
    assert set(windows["properties"]) == set(windows["required"]) | OPTIONAL_WINDOW_FIELDS
    assert not OPTIONAL_WINDOW_FIELDS & set(windows["required"])
    source = defs["status"]["properties"]["source"]
    assert set(source["properties"]) == set(source["required"]) | OPTIONAL_SOURCE_FIELDS
    assert not OPTIONAL_SOURCE_FIELDS & set(source["required"])


def test_every_published_message_matches_schema_and_field_list(tmp_path, validator):
    for message in published_messages(tmp_path):
        validator.validate(message)
        assert set(message) == FROZEN_FIELDS[message["type"]] | OPTIONAL_FIELDS[message["type"]]
        # A message from a daemon before the optional fields still validates.
        older = {key: value for key, value in message.items() if key not in OPTIONAL_FIELDS[message["type"]]}
        if message["type"] == "status":
            older["windows"] = {k: v for k, v in message["windows"].items() if k not in OPTIONAL_WINDOW_FIELDS}
            older["source"] = {k: v for k, v in message["source"].items() if k not in OPTIONAL_SOURCE_FIELDS}
        validator.validate(older)
    caption = published_messages(tmp_path)[0]
    assert caption["caption"] == caption["candidates"][0]["caption"]
    assert caption["audio"]["start"] == "2023-11-14T22:13:20.000000Z"
    assert caption["audio"]["end"] == "2023-11-14T22:13:30.000000Z"  # 160000 samples at 16 kHz


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("seq"),
        lambda m: m.update(extra_field=1),
        lambda m: m["audio"].pop("start_sample"),
        lambda m: m.update(candidates=[]),
        lambda m: m["audio"].update(start="2023-11-14 22:13:20"),
    ],
)
def test_schema_rejects_changed_messages(tmp_path, validator, change):
    message = published_messages(tmp_path)[0]
    change(message)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(message)


@pytest.fixture(scope="module")
def node_subscriber() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the contract test: run scripts/setup.sh")
    if not (EXAMPLES / "node_modules" / "zeromq").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLES, check=True, timeout=300)
    return EXAMPLES / "subscriber.js"


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_node_subscriber_reads_the_contract(node_subscriber, tmp_path, validator, transport):
    endpoint = f"ipc://{tmp_path}/c.sock" if transport == "ipc" else free_tcp_endpoint()
    publisher = Publisher(endpoint, "kitchen")
    node = subprocess.Popen(
        ["node", str(node_subscriber), endpoint, "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Heartbeats until node's subscription is through, then the contract messages.
        deadline = time.monotonic() + 20
        sent = []
        while node.poll() is None and time.monotonic() < deadline:
            sent.append(publisher.publish("caption", caption_body(len(sent) * 32000)))
            time.sleep(0.1)
        out, err = node.communicate(timeout=10)
    finally:
        if node.poll() is None:
            node.kill()
        publisher.close()
    assert node.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    by_seq = {m["seq"]: m for m in sent}
    for line in lines:
        topic, body = line.split("\t", 1)
        message = json.loads(body)
        assert topic == "edge-dac/v1/caption/kitchen"
        validator.validate(message)
        assert message == by_seq[message["seq"]]  # what node parsed is exactly what Python sent
    assert "a dog barks twice" in err  # the example's readable line
