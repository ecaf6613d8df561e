"""Minimal edge-dac subscriber in Python (pyzmq): captions, events, lost messages, a daemon gone.

    python examples/subscriber.py [ENDPOINT]     e.g. tcp://127.0.0.1:5556
"""

import json
import sys

import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "ipc:///run/edge-dac/captions.sock"
socket = zmq.Context().socket(zmq.SUB)
socket.setsockopt(zmq.SUBSCRIBE, b"edge-dac/v1/")  # every type and device; or b"edge-dac/v1/caption/"
socket.setsockopt(zmq.RCVTIMEO, 5000)  # status comes every second: 5 s of nothing means no daemon
socket.connect(endpoint)
last_seq, state = {}, None
while True:
    try:
        topic, body = socket.recv_multipart()
    except zmq.Again:
        print(f"nothing from {endpoint} for 5 s: daemon stopped or unreachable", file=sys.stderr)
        continue
    message = json.loads(body)
    if message["seq"] > last_seq.get(topic, message["seq"] - 1) + 1:  # lower: the daemon restarted
        print(f"{topic.decode()}: lost {message['seq'] - last_seq[topic] - 1} message(s)", file=sys.stderr)
    last_seq[topic] = message["seq"]
    if message["type"] == "caption":
        print(message["audio"]["start"], message["caption"], f"({message['score']:.2f})", flush=True)
    elif message["type"] == "event" and message["phase"] != "update":
        print(message["audio"]["start"], f"event {message['phase']}: {message['caption']}", flush=True)
    elif message["type"] == "status" and message["state"] != state:
        state = message["state"]
        print(f"daemon {state}, {message['source']['kind']} {message['source']['state']}", flush=True)
