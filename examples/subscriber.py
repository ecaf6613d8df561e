"""Minimal edge-dac subscriber in Python (pyzmq): print captions and events as they come.

    python examples/subscriber.py [ENDPOINT]     e.g. tcp://127.0.0.1:5556
"""

import json
import sys

import zmq

endpoint = sys.argv[1] if len(sys.argv) > 1 else "ipc:///run/edge-dac/captions.sock"
socket = zmq.Context().socket(zmq.SUB)
socket.connect(endpoint)
socket.setsockopt(zmq.SUBSCRIBE, b"edge-dac/v1/caption/")  # also .../event/ and .../status/
socket.setsockopt(zmq.SUBSCRIBE, b"edge-dac/v1/event/")
while True:
    topic, body = socket.recv_multipart()
    message = json.loads(body)
    if message["type"] == "caption":
        print(message["audio"]["start"], message["caption"], f"({message['score']:.2f})")
    elif message["phase"] in ("start", "end"):
        print(message["audio"]["start"], f"event {message['phase']}: {message['caption']}")
