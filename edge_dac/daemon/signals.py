"""SIGTERM, SIGINT and SIGHUP for the whole life of ``edge-dac run``: start-up and shut-down included.

systemd and docs/systemd.md promise that a stop signal ends the daemon with status 0 within 5 s, at
any moment. Two things stood in the way: a signal that arrives while no handler is installed (the
start-up, before the daemon runs; the end, after it returned) takes the default action, death with
status 143 (130 for SIGINT); and Python runs a handler only in the main thread between bytecodes, so
a handler alone cannot act while the main thread is inside one long C call (an engine build).

So the handlers are installed once, first thing, and never taken away while the process lives; the C
level handler also writes the signal number to a wake-up socket (``signal.set_wakeup_fd``), and a
watcher thread acts on it at once. What a signal does depends on the phase:

- **start-up** (no daemon attached yet: config, engine build): SIGTERM/SIGINT exit the process with
  status 0 at once (nothing is published yet and nothing needs cleaning up; engine builds are
  renamed into the cache only when complete). SIGHUP is kept and handed to the daemon when it
  attaches (it reloads the config then).
- **running** (``attach``): the daemon's handler (stop: drain, ``offline``, exit 0; reload).
- **ending** (``detach``): the process is already on its way out with its status; further
  signals are ignored (``SIG_IGN``).

Only the first moments of the interpreter, before ``edge-dac run`` has imported anything of its
own (a fraction of a second), still belong to the default action.

A program that embeds the daemon and goes on afterwards calls ``uninstall()`` to get its previous
handlers back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

from loguru import logger

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class ProcessSignals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handler: Callable[[int], None] | None = None
        self._phase = "start-up"
        self._pending: list[int] = []
        self._previous: dict[int, object] = {}
        self._previous_fd = -1
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None

    @property
    def installed(self) -> bool:
        return self._reader is not None

    def install(self) -> ProcessSignals:
        """Take over SIGTERM/SIGINT/SIGHUP (from the main thread; idempotent)."""
        if self.installed:
            if self._phase == "ending":  # a second daemon in the same process
                for signum in HANDLED:
                    signal.signal(signum, self._python_handler)
            return self
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._reader, self._writer = reader, writer
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._python_handler)
        threading.Thread(target=self._watch, args=(reader,), name="signals", daemon=True).start()
        logger.debug("signal handlers installed: SIGTERM/SIGINT now end start-up with status 0")
        return self

    def uninstall(self) -> None:
        """Give the previous handlers back (for a program that goes on after the daemon)."""
        if not self.installed:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        writer, self._writer, self._reader = self._writer, None, None
        with contextlib.suppress(OSError):
            writer.close()  # the watcher's recv returns b"" and it ends

    @staticmethod
    def _python_handler(signum: int, frame: object) -> None:
        """Nothing to do here: the C-level handler has written ``signum`` to the wake-up socket, and
        the watcher thread acts on it (at once, even while this thread is busy in C code)."""

    def _watch(self, reader: socket.socket) -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in HANDLED:
                    self._dispatch(signum)

    def _dispatch(self, signum: int) -> None:
        with self._lock:
            handler, phase = self._handler, self._phase
            if handler is None and phase == "start-up" and signum == signal.SIGHUP:
                self._pending.append(signum)
        if handler is not None:
            handler(signum)
        elif phase == "start-up" and signum in STOP_SIGNALS:
            self._exit_during_start_up(signum)
        elif phase == "start-up":
            logger.info(f"{_name(signum)} during start-up: the config is re-read once the daemon runs")
        else:
            logger.info(f"{_name(signum)} while stopping: already on the way out")

    @staticmethod
    def _exit_during_start_up(signum: int) -> None:
        logger.info(f"{_name(signum)} during start-up: exiting (status 0)")
        from edge_dac.daemon.notify import Notifier

        notifier = Notifier()
        notifier.stopping()
        notifier.close()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    def attach(self, handler: Callable[[int], None]) -> None:
        """From now on signals go to ``handler`` (a SIGHUP kept from start-up goes there at once)."""
        with self._lock:
            self._handler, self._phase = handler, "running"
            pending, self._pending = self._pending, []
        for signum in pending:
            handler(signum)

    def detach(self) -> None:
        """The daemon returned: signals from now on are ignored while the process ends.

        Ignored by the kernel (``SIG_IGN``), not by a handler: while the interpreter shuts down it
        puts the default action back for every signal that has a Python handler, which would open
        the window this closes.
        """
        with self._lock:
            self._handler, self._phase = None, "ending"
        if self.installed and threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                signal.signal(signum, signal.SIG_IGN)


_signals = ProcessSignals()


def install_signals() -> ProcessSignals:
    """The process's signal handling, installed on first use (call it from the main thread, early)."""
    return _signals.install()
