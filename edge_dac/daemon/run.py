"""``edge-dac run``: capture -> windows -> engine -> captions and events -> ZeroMQ.

Threads, each owning one step: the source's own (PortAudio callback, mic supervisor), *capture*
(source -> windows -> queue; never waits for the engine), *inference* (queue -> engine -> events ->
publisher), *heartbeat* (status every second), and the main thread, which only handles signals and
start-up/shutdown. ``SIGTERM``/``SIGINT`` stop capture, let the engine finish what is queued (up to
``DRAIN_S``), end open events, publish ``offline`` and return 0; before the daemon runs (engine
build) and after it returned they end the process with status 0 too (``signals.py``). ``SIGHUP``
re-reads the config and applies what changed in place: capture, the sample clock, the window in
progress and the sequence numbers go on (``Daemon._reload``).

To plug in an engine: ``Daemon(config, engine).run()``, or ``run_daemon(config, engine)``.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from edge_dac.daemon import memory, messages
from edge_dac.daemon.clock import AudioClock
from edge_dac.daemon.config import DaemonConfig, EngineConfig, WindowConfig, load_daemon_config, parse_source
from edge_dac.daemon.events import EventChange, EventTracker, make_agreement
from edge_dac.daemon.listen import format_message
from edge_dac.daemon.metrics import Metrics
from edge_dac.daemon.notify import Notifier
from edge_dac.daemon.publisher import Publisher
from edge_dac.daemon.signals import install_signals
from edge_dac.daemon.sources import AudioSource, open_source
from edge_dac.daemon.status import Heartbeat
from edge_dac.daemon.windows import Window, Windower
from edge_dac.daemon.worker import Captioned, Captioning, InferenceWorker, WindowQueue
from edge_dac.errors import ConfigError, EdgeDacError
from edge_dac.windows import gap_warning

DEFAULT_WINDOW_S = 10.0  # for an engine that does not say how much audio its model hears
DRAIN_S = 3.0  # SIGTERM: time the engine gets for queued windows (systemd allows 10 s, we promise 5)
START_EXTEND_S = 30.0  # EXTEND_TIMEOUT_USEC while waiting for a microphone during start-up (not once it failed)


def window_seconds(config: WindowConfig, engine: Captioning) -> float:
    """The window length: the config's, else the model's own window.

    A window longer than the model's is refused: the engine would hear only its first part, so every
    caption would describe audio that is seconds old while claiming the whole window.
    """
    model_samples = getattr(engine, "window_samples", None)
    model_s = model_samples / engine.sample_rate if model_samples else None
    if config.length_s is None:
        return model_s or DEFAULT_WINDOW_S
    if model_s is not None and config.length_s > model_s + 1e-9:
        raise ConfigError(
            f"windows.length_s {config.length_s:g} is longer than the model's {model_s:g} s window; "
            f"set it to {model_s:g} or less, or null"
        )
    return config.length_s


def window_latency(clock: AudioClock, window: Window, now: float | None = None) -> float:
    """Seconds from the window's end to ``now``, never negative.

    The end is where the audio clock puts the window's last sample, or the moment that sample reached
    the process (``window.complete_at``) if that was earlier: a window cannot end after it was
    complete. For a live source both agree within the capture delay; for files read ``--fast`` the
    audio clock runs ahead of the wall clock (minutes, after a while), so latency counts from
    completion: the time spent queued and captioning.
    """
    now = time.time() if now is None else now
    ended = clock.time_of(window.end_sample)
    if window.complete_at is not None:
        ended = min(ended, window.complete_at)
    return max(0.0, now - ended)


def set_guidance(engine: Captioning, guidance: float) -> None:
    """The config's event guidance into an engine that has one (an attribute the next batch reads)."""
    if hasattr(engine, "event_guidance"):
        engine.event_guidance = guidance


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        engine: Captioning,
        *,
        reload_config: Callable[[], DaemonConfig] | None = None,
        labels_of: Callable[[str], set[str]] | None = None,
        print_captions: bool = False,
        notifier: Notifier | None = None,
    ):
        self.config, self.engine, self.reload_config = config, engine, reload_config
        self.labels_of, self.print_captions = labels_of, print_captions
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.metrics.engine.info({"backend": engine.backend, "model_id": engine.model_id})
        self.publisher: Publisher | None = None
        self._wake = threading.Event()
        self._stop_requested = self._reload_requested = False
        self._ready = False
        self._started = time.monotonic()
        self._lock = threading.Lock()  # counters shared by capture, inference and heartbeat
        self.captioned = self.silent = self.dropped_before = self.overflows_before = 0
        self.failed = 0  # windows the engine gave no usable caption for (see worker.caption_problem)
        self.error: str | None = None  # why the latest voiced window failed; None once one captions again
        self.latency_ms: float | None = None
        self.last_silent: bool | None = None
        self._rtf_mark = (0.0, 0)  # (engine busy seconds, stream sample) at the last heartbeat
        self.real_time_factor: float | None = None
        self._overflows_counted = 0

    # -- the chain: built at start-up, and again when a reload changes the source -----------------
    def _build_chain(self) -> None:
        config, rate = self.config, self.engine.sample_rate
        self.source: AudioSource = open_source(config.source, rate)
        length_s = window_seconds(config.windows, self.engine)
        self.windower = Windower(length_s, config.windows.hop_s, rate, config.windows.silence_dbfs)
        self.queue = WindowQueue(config.worker.queue_size)
        self.clock: AudioClock | None = None
        self.position = 0
        self.tracker = EventTracker(
            make_agreement(self.labels_of),
            labels_of=self.labels_of, end_after=config.events.end_after,
        )
        set_guidance(self.engine, config.engine.event_guidance)
        self.worker = InferenceWorker(
            self.engine, self.queue, steps=config.engine.steps, candidates=config.engine.candidates,
            max_batch=config.worker.max_batch, on_result=self._on_caption, on_silent=self._on_silent,
            on_failed=self._on_failed,
        )
        self._capture_stop = threading.Event()
        self.capture = threading.Thread(target=self._capture, name="capture", daemon=True)
        if hasattr(self.source, "on_retry"):  # a mic being reopened is alive, not stalled
            self.source.on_retry = self.notifier.watchdog

    def _capture(self) -> None:
        source, realtime = self.source, self.source.realtime
        while not self._capture_stop.is_set():
            block = source.read(0.2)
            arrived_at = time.time()
            if block is None:
                if source.state == "finished":
                    self._wake.set()
                    return
                continue
            if self.clock is None:  # anchored here; a live source's clock is then kept on the wall clock
                self.clock = AudioClock(source.sample_rate, source.anchor_time, disciplined=realtime)
                self.tracker.id_prefix = f"{self.publisher.device}-{int(source.anchor_time)}-"
            self.clock.observe(block.start_sample, block.end_sample, arrived_at)
            self.position = block.end_sample
            for window in self.windower.push(block, arrived_at):
                if self.queue.put(window, wait=not realtime) is not None:
                    self.metrics.windows.labels("dropped").inc()
                self.metrics.queue_depth.set(len(self.queue))

    # -- inference thread callbacks ------------------------------------------------------------
    def _publish_events(self, changes: list[EventChange], latency_ms: float | None) -> None:
        for change in changes:
            event = change.event
            self.publisher.publish("event", messages.event_body(
                change.phase, event.event_id, messages.audio_span(self.clock, event.start_sample, event.end_sample),
                caption=event.caption, labels=sorted(event.labels), windows=event.windows, latency_ms=latency_ms,
                model_id=self.engine.model_id, backend=self.engine.backend,
            ))

    def _on_caption(self, result: Captioned) -> None:
        window = result.window
        changes = self.tracker.observe(window.start_sample, window.end_sample, result.candidates[0][0])
        latency_s = window_latency(self.clock, window)
        message = self.publisher.publish("caption", messages.caption_body(
            messages.audio_span(self.clock, window.start_sample, window.end_sample), result.candidates,
            latency_ms=latency_s * 1000, processing_ms=result.processing_s * 1000, model_id=self.engine.model_id,
            backend=self.engine.backend, steps=result.steps or self.config.engine.steps,
            event_id=self.tracker.current.event_id,
        ))
        self._publish_events(changes, latency_s * 1000)
        with self._lock:
            self.captioned += 1
            self.latency_ms, self.last_silent, self.error = latency_s * 1000, False, None
        self.metrics.windows.labels("captioned").inc()
        self.metrics.latency.observe(latency_s)
        self.metrics.queue_depth.set(len(self.queue))
        self.notifier.watchdog()  # a window went end to end
        if self.print_captions and message is not None:
            print(format_message(message), flush=True)

    def _on_silent(self, window: Window) -> None:
        self._publish_events(self.tracker.observe_silence(), None)
        with self._lock:
            self.silent += 1
            self.last_silent = True
        self.metrics.windows.labels("silent").inc()
        self.notifier.watchdog()  # capture and the chain work; there was just nothing to hear

    def _on_failed(self, window: Window, problem: str) -> None:
        """No usable caption (a NaN score, an empty caption): reported in the status (``windows.failed``,
        ``error``, state ``degraded``), never published as a caption. The open event ends as on silence.
        No watchdog ping: the window did not go end to end."""
        self._publish_events(self.tracker.observe_silence(), None)
        with self._lock:
            self.failed += 1
            first = self.error is None
            self.error = f"{problem}; window at sample {window.start_sample} not captioned"
            failed = self.failed
        self.metrics.windows.labels("failed").inc()
        if first or failed % 100 == 0:  # the first of a run of failures, then every 100th
            logger.error(f"{self.error} ({failed} window(s) failed so far): check the model (--model)")

    # -- status ---------------------------------------------------------------------------------
    def state(self) -> str:
        if not self._ready:  # a source that never opened and was given up on (it still retries) is not starting
            return "degraded" if self.source.state == "failed" else "starting"
        if self.error is not None:  # the latest voiced window got no usable caption
            return "degraded"
        return "running" if self.source.state in ("healthy", "finished") else "degraded"

    def status_body(self, state: str | None = None) -> dict[str, Any]:
        source = self.source
        busy, position = self.worker.busy_s, self.position
        advanced = (position - self._rtf_mark[1]) / source.sample_rate
        if advanced > 0:
            self.real_time_factor = (busy - self._rtf_mark[0]) / advanced
            self._rtf_mark = (busy, position)
        overflows = self.overflows_before + source.overflows
        if overflows > self._overflows_counted:
            self.metrics.overflows.inc(overflows - self._overflows_counted)
            self._overflows_counted = overflows
        self.metrics.source_healthy.set(1 if source.state == "healthy" else 0)
        if self.real_time_factor is not None:
            self.metrics.real_time_factor.set(self.real_time_factor)
        drift_ppm = self.clock.drift_ppm if self.clock else None
        if drift_ppm is not None:
            self.metrics.clock_drift.set(drift_ppm)
        with self._lock:
            windows = {
                "captioned": self.captioned, "dropped": self.dropped_before + self.queue.dropped,
                "silent": self.silent, "queued": len(self.queue), "failed": self.failed,
            }
            latency, silent, error = self.latency_ms, self.last_silent, self.error
        return messages.status_body(
            state=state or self.state(), uptime_s=time.monotonic() - self._started,
            source={"kind": source.kind, "name": source.name, "state": source.state, "overflows": overflows,
                    "reopens": source.reopens, "problem": getattr(source, "problem", None)},
            windows=windows, real_time_factor=self.real_time_factor,
            audio=messages.audio_span(self.clock, 0, position) if self.clock else None,
            latency_ms=latency, silent=silent, model_id=self.engine.model_id, backend=self.engine.backend,
            error=error, drift_ppm=drift_ppm,
        )

    # -- life cycle -------------------------------------------------------------------------------
    @staticmethod
    def _socket_settings(p) -> dict[str, Any]:
        """The publisher config as ``Publisher``'s socket options (start-up and reload alike)."""
        return {
            "hwm": p.hwm, "ipc_mode": int(p.ipc_mode, 8),
            "curve_secret_key": p.curve.secret_key if p.curve else None,
            "curve_authorized_keys": p.curve.authorized_keys if p.curve else None,
        }

    def _make_publisher(self) -> Publisher:
        p = self.config.publisher
        return Publisher(p.endpoint, p.device_id, **self._socket_settings(p))

    def _warn_about_gaps(self) -> None:
        rate = self.engine.sample_rate
        if warning := gap_warning(self.windower.length / rate, self.windower.hop / rate, "windows.hop_s"):
            logger.warning(warning)

    def _warm_up(self) -> None:
        """One window through the engine before READY: the first call is the slow one (allocation, JIT)."""
        self.notifier.status(f"warming up {self.engine.model_id} on {self.engine.backend}")
        length = self.windower.length
        started = time.perf_counter()
        self.engine.caption(np.zeros((1, length), dtype=np.float32), self.config.engine.steps, 1)
        seconds = time.perf_counter() - started
        logger.info(f"engine {self.engine.model_id} on {self.engine.backend} warm ({seconds:.2f} s)")

    def _handle_signal(self, signum: int, _frame: object = None) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True
        self._wake.set()

    def _wait(self) -> str:
        """Block until stop, reload, the end of a file source, or a broken engine; say which.

        Until the source is open, STATUS= says what it waits for and EXTEND_TIMEOUT_USEC keeps a slow
        but bounded wait alive; once the source reports ``failed`` (a microphone absent for
        ``retry.failed_after_s``) the extensions stop, so the unit's TimeoutStartSec= is what
        decides, and STATUS= names the device and what was found instead.
        """
        extended, said = 0.0, ""
        while True:
            self._wake.wait(0.2)
            self._wake.clear()
            if not self._ready and self.source.state == "healthy":
                self._ready = True
                text = self._running_text()
                self.notifier.ready(text)
                logger.info(text)
            elif not self._ready:
                source = self.source
                failed = source.state == "failed"
                problem = getattr(source, "problem", None)
                text = (f"failed: {problem or source.kind + ' ' + repr(source.name) + ' not available'}; "
                        "retrying in the background" if failed else self._waiting_text())
                if not failed and time.monotonic() - extended > START_EXTEND_S / 3:
                    extended = time.monotonic()
                    self.notifier.extend_timeout(START_EXTEND_S)
                    said = ""  # repeat the status with each extension
                if text != said:
                    self.notifier.status(text)
                    said = text
            if self._stop_requested:
                return "stop"
            if self._reload_requested:
                self._reload_requested = False
                return "reload"
            if not self.worker.is_alive() and self.worker.error is not None:
                return "error"
            if self.source.state == "finished" and not self.capture.is_alive():
                return "finished"

    def _start_chain(self) -> None:
        self.source.start()
        self.worker.start()
        self.capture.start()

    def _stop_chain(self) -> None:
        """Stop capture, let the engine finish queued windows (bounded), end the open event."""
        self._capture_stop.set()
        self.source.stop()
        self.queue.close()  # also wakes a capture thread waiting for room
        self.capture.join(timeout=1)
        self.worker.join(timeout=DRAIN_S)
        if self.worker.is_alive():
            logger.warning(f"engine did not finish in {DRAIN_S} s; dropping {self.queue.clear()} queued window(s)")
            self.worker.join(timeout=1)
        if self.clock is not None:
            self._publish_events(self.tracker.close(), None)
        self.dropped_before += self.queue.dropped
        self.overflows_before += self.source.overflows

    # -- SIGHUP: apply what changed, and only that --------------------------------------------
    def _running_text(self) -> str:
        return f"captioning {self.source.kind} '{self.source.name}' -> {self.publisher.endpoint}"

    def _waiting_text(self) -> str:
        return f"waiting for {self.source.kind} '{self.source.name}' ({self.source.state})"

    def _reload_done(self) -> None:
        """READY=1 ends systemd's "reloading" state; before the first READY=1 only the status changes."""
        if self._ready:
            self.notifier.ready(self._running_text())
        else:
            self.notifier.status(self._waiting_text())

    def _reload(self) -> None:
        """Re-read the config and apply what changed in place (docs/systemd.md, "Reloading").

        Capture, the sample clock and the window in progress go on, and every topic keeps its
        sequence numbers. Only a changed ``source`` restarts capture (a new source has its own sample
        clock); ``engine.model/backend/precision/threads`` need a restart of the daemon. A config that cannot
        be applied (invalid, a window the model cannot hear, an endpoint that cannot be bound)
        changes nothing at all.
        """
        self.notifier.reloading()
        old = self.config
        try:
            new = self.reload_config() if self.reload_config else old
            length_s = window_seconds(new.windows, self.engine)
            try:  # checked before anything changes
                Windower(length_s, new.windows.hop_s, self.engine.sample_rate)
            except ValueError as error:
                raise ConfigError(f"windows: {error}") from None
            p = new.publisher
            rebound = self.publisher.reconfigure(p.endpoint, **self._socket_settings(p))
        except EdgeDacError as error:
            logger.error(f"reload refused, keeping the running config: {error}")
            self._reload_done()
            return
        self.config = new
        changed = changed_keys(old, new)
        notes = []
        if rebound:
            notes.append(f"new socket on {p.endpoint} (sequence numbers go on)")
        elif p.curve:  # keys added to the authorised folder count from now on
            self.publisher.reload_authorized_keys()
        if p.device_id != old.publisher.device_id:
            self.publisher.rename(p.device_id)
            if self.clock is not None and self.source.anchor_time is not None:
                self.tracker.id_prefix = f"{p.device_id}-{int(self.source.anchor_time)}-"
        self.heartbeat.interval_s = p.heartbeat_s
        if any(getattr(new.engine, k) != getattr(old.engine, k) for k in ("model", "backend", "precision", "threads")):
            logger.warning("engine model/backend/precision/threads changed: restart the daemon to apply them")
        if new.metrics != old.metrics:
            self.metrics.close()
            if new.metrics.enabled:
                try:
                    self.metrics.serve(new.metrics.address, new.metrics.port)
                except EdgeDacError as error:
                    logger.error(f"metrics not served: {error}")
        if new.source != old.source:
            notes.append("source changed: capture restarted (its sample clock starts again)")
            self._stop_chain()
            self._build_chain()  # windows, worker and events come from the new config too
            self._warn_about_gaps()
            self._start_chain()
        else:
            if new.windows != old.windows:
                self.windower.reconfigure(length_s, new.windows.hop_s, new.windows.silence_dbfs)
                self._warn_about_gaps()
            self.worker.steps, self.worker.candidates = new.engine.steps, new.engine.candidates
            set_guidance(self.engine, new.engine.event_guidance)
            self.worker.max_batch = new.worker.max_batch
            self.queue.resize(new.worker.queue_size)
            self.tracker.end_after = new.events.end_after
            if changed:
                notes.append("capture and the sample clock go on")
        logger.info(f"config reloaded: {', '.join(changed) or 'nothing changed'}" + "".join(f"; {n}" for n in notes))
        self._reload_done()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (0), the end of a non-looping file (0) or a broken engine (1).

        Signals stay handled after it returns (ignored: the process is ending); a program that goes
        on afterwards calls ``edge_dac.daemon.signals.install_signals().uninstall()``.
        """
        signals = install_signals()  # from the main thread; edge-dac run did it before building the engine
        signals.attach(self._handle_signal)
        try:
            self._build_chain()  # a bad source file fails here, before anything needs cleaning up
            self._warn_about_gaps()
            self.publisher = self._make_publisher()  # a second instance is refused before any heavy work
        except BaseException:
            signals.detach()
            raise
        self.heartbeat = Heartbeat(self.config.publisher.heartbeat_s, self.status_body,
                                   lambda body: self.publisher.publish("status", body))
        outcome = "stop"
        try:
            if self.config.metrics.enabled:
                self.metrics.serve(self.config.metrics.address, self.config.metrics.port)
            self.heartbeat.start()
            self._warm_up()
            if not self._stop_requested:  # a stop during the warm-up needs no capture
                self._start_chain()
                while (outcome := self._wait()) == "reload":
                    self._reload()
                self.notifier.status(f"stopping ({outcome})")
                self._stop_chain()
        finally:
            self.heartbeat.stop()
            self.notifier.stopping()
            if self.publisher is not None:
                self.publisher.publish("status", self.status_body("offline"))
                self.publisher.close()
            self.metrics.close()
            self.notifier.close()
            signals.detach()
        if outcome == "error":
            logger.error(f"engine failed {self.worker.failures} times in a row: {self.worker.error}")
            return 1
        return 0


def changed_keys(old: DaemonConfig, new: DaemonConfig) -> list[str]:
    """Dotted names of the settings that differ, e.g. ``["publisher.heartbeat_s", "windows.hop_s"]``."""

    def flat(data: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(data, dict):
            return {prefix: data}
        return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()} or {
            prefix: data
        }

    a, b = flat(old.model_dump()), flat(new.model_dump())
    return sorted(key.rstrip(".") for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def run_daemon(config: DaemonConfig, engine: Captioning, **options: Any) -> int:
    """Run the daemon with a ready engine; see ``Daemon`` for the options."""
    return Daemon(config, engine, **options).run()


def build_engine(config: EngineConfig, sample_rate_hint: int = 16000) -> Captioning:
    """The engine for ``config`` (``edge_dac.engines``, written separately)."""
    try:
        from edge_dac.engines import load_engine
    except ImportError:
        raise EdgeDacError(
            "no caption engine installed (edge_dac.engines.load_engine is missing); update edge-dac"
        ) from None
    return load_engine(model=config.model, backend=config.backend, threads=config.threads, precision=config.precision)


def _apply_overrides(config: DaemonConfig, args: argparse.Namespace) -> DaemonConfig:
    data = config.model_dump()
    if args.source:
        data["source"] = {**data["source"], "path": None, "device": None, **parse_source(args.source)}
    if args.fast:
        data["source"]["fast"] = True
    if args.loop:
        data["source"]["loop"] = True
    if args.endpoint:
        data["publisher"]["endpoint"] = args.endpoint
    if getattr(args, "model", None):
        data["engine"]["model"] = args.model
    from edge_dac.config import validate_config

    return validate_config(data, DaemonConfig, "command line")


def run_from_args(args: argparse.Namespace) -> int:
    # First: a SIGTERM while the config loads or the engine builds must end the process with status 0.
    install_signals()

    def load() -> DaemonConfig:
        return _apply_overrides(load_daemon_config(Path(args.config) if args.config else None), args)

    config = load()
    memory.limit_arenas()  # before the engine and the threads allocate: see daemon/memory.py
    engine = build_engine(config.engine)
    memory.release()  # what loading left behind (the checkpoint's bytes, the graphs' protobufs)
    from edge_dac.lexicon import load_lexicon

    # The caption lexicon decides which consecutive captions describe one event.
    labels_of = load_lexicon().labels_in_caption
    return run_daemon(config, engine, reload_config=load, labels_of=labels_of, print_captions=args.print_captions)
