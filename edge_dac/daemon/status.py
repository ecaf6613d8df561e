"""The status heartbeat: one status message every ``interval_s``, and ``offline`` on shutdown.

A subscriber that joins late learns the daemon's state within a second, and one that hears
nothing for a few seconds knows the daemon is gone rather than the room being quiet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Heartbeat(threading.Thread):
    def __init__(self, interval_s: float, build: Callable[[], dict[str, Any]], send: Callable[[dict[str, Any]], Any]):
        super().__init__(name="heartbeat", daemon=True)
        self.interval_s, self.build, self.send = interval_s, build, send
        self._stopping = threading.Event()

    def run(self) -> None:
        while True:
            self.send(self.build())
            if self._stopping.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=2)
