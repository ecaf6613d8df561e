"""systemd notifications (``sd_notify``) over ``$NOTIFY_SOCKET`` with a plain datagram socket.

Outside systemd ``NOTIFY_SOCKET`` is unset and every call does nothing, so the daemon needs no
special mode for running by hand. The protocol is newline-separated ``KEY=VALUE`` lines in one
datagram; an address starting with ``@`` is in the abstract namespace.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address = ("\0" + address[1:] if address.startswith("@") else address) if address else None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self._address else None
        self._lock = threading.Lock()
        self._last_watchdog = 0.0
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: object) -> None:
        if self._socket is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        with self._lock, contextlib.suppress(OSError):  # systemd gone (shutdown): nothing useful to do
            self._socket.sendto(message, self._address)

    def ready(self, status: str) -> None:
        self.send(READY=1, STATUS=status)

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def extend_timeout(self, seconds: float) -> None:
        """Keep a slow but progressing start-up (engine build, absent microphone) from timing out."""
        self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1e6))

    def watchdog(self) -> None:
        """Proof of life; rate-limited because windows can complete many times a second."""
        now = time.monotonic()
        if now - self._last_watchdog >= 0.5:
            self._last_watchdog = now
            self.send(WATCHDOG=1)

    def stopping(self) -> None:
        self.send(STOPPING=1, STATUS="stopping")

    def reloading(self) -> None:
        self.send(RELOADING=1, STATUS="reloading config")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
