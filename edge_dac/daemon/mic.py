"""The microphone source: a PortAudio input stream watched by a supervisor that survives losses.

The PortAudio callback only copies samples into a bounded buffer and counts overflows; everything
else happens on other threads. A supervisor thread opens the device (waiting for it at boot),
notices when it is lost (the stream stopped, or no callback for ``stall_s``, which also catches
PortAudio's callback that silently stops while the stream reports active), and reopens it with
exponential backoff, re-initialising PortAudio each time because only a fresh PortAudio sees a
re-plugged USB device. States: ``waiting`` (not yet opened), ``healthy``, ``recovering`` (lost,
retrying), ``failed`` (waiting or recovering for longer than ``retry.failed_after_s``, 60 s by
default; it goes on retrying in the background, and each retry is then logged as a WARNING with
what went wrong, e.g. the inputs that were found instead). ``problem`` says why in one line.

Audio lost while the device was away is not pretended away: the sample clock jumps forward by the
time that passed, so timestamps stay true and no window stitches two moments together.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sounddevice as sd
import soxr
from loguru import logger

from edge_dac.daemon.config import SourceConfig
from edge_dac.daemon.windows import AudioBlock
from edge_dac.errors import AudioError

SYS_SOUND = Path("/sys/class/sound")
FIRST_CALLBACK_GRACE_S = 3.0  # PulseAudio's first callback comes 0.8-1.9 s after start()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def card_identity(card: int, sys_sound: Path = SYS_SOUND) -> dict[str, str]:
    """Stable names of ALSA card ``card``: its id (e.g. ``Device``) and, for USB, vendor:product:serial."""
    base = sys_sound / f"card{card}"
    identity = {"card": _read(base / "id")}
    usb = (base / "device").resolve().parent  # the USB device above the audio interface
    if (usb / "idVendor").exists():
        identity["usb"] = ":".join(filter(None, (_read(usb / f) for f in ("idVendor", "idProduct", "serial"))))
    return identity


def _card_of(device_name: str) -> int | None:
    match = re.search(r"\(hw:(\d+),", device_name)
    return int(match.group(1)) if match else None


def find_input_device(spec: str | int | None, sys_sound: Path = SYS_SOUND) -> tuple[int, str]:
    """Resolve ``spec`` to (PortAudio index, readable name); raises AudioError if absent now.

    ``None``: the default input. An int: that index. ``card:ID``: the ALSA card with that id,
    ``usb:VID:PID[:SERIAL]``: the USB device, both stable across renumbering. Else a name substring.
    """
    devices = [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]
    if not devices:
        raise AudioError("no audio input devices; plug in a microphone or check the 'audio' group")
    if spec is None:
        index = sd.default.device[0]
        index = index if index is not None and index >= 0 else devices[0][0]
        return index, sd.query_devices(index)["name"]
    if isinstance(spec, int):
        for i, d in devices:
            if i == spec:
                return i, d["name"]
    else:
        kind, _, value = spec.partition(":")
        for i, d in devices:
            card = _card_of(d["name"])
            if kind in ("card", "usb") and card is not None:
                found = card_identity(card, sys_sound).get(kind, "")
                if found and (found == value or (kind == "usb" and found.startswith(value + ":"))):
                    return i, d["name"]
            elif kind not in ("card", "usb") and spec.lower() in d["name"].lower():
                return i, d["name"]
    names = ", ".join(f"{i}: {d['name']}" for i, d in devices)
    raise AudioError(f"microphone {spec!r} not found (inputs: {names}); set source.device")


class MicSource:
    kind = "mic"
    realtime = True

    def __init__(self, config: SourceConfig, sample_rate: int):
        self.config, self.sample_rate = config, sample_rate
        self.name = str(config.device) if config.device is not None else "default"
        self.state = "waiting"
        self.overflows = self.reopens = 0
        self.anchor_time: float | None = None
        self.on_retry: Callable[[], None] | None = None  # called after each (re)open attempt: watchdog ping
        self.problem: str | None = None  # why it is not open (the latest error), None while healthy
        self._chunks: deque[tuple[int, float, np.ndarray]] = deque()  # (segment, wall time of first sample, samples)
        self._buffered = 0
        self._lost_samples = 0  # overwritten because nobody read them for ring_s seconds
        self._cond = threading.Condition()
        self._segment = 0  # increments on every (re)open: the reader re-aligns the clock
        self._last_callback = 0.0
        self._stream: sd.InputStream | None = None
        self._capture_rate = sample_rate
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="mic-supervisor", daemon=True)
        # Reader side: the output sample clock and the resampler of the current segment.
        self._read_segment = -1
        self._position = 0
        self._resampler: soxr.ResampleStream | None = None

    # -- capture thread (PortAudio) --------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info, status: sd.CallbackFlags) -> None:
        now = time.time()
        if status.input_overflow:
            self.overflows += 1
        samples = indata[:, 0].copy()
        with self._cond:
            self._last_callback = time.monotonic()
            self._chunks.append((self._segment, now - frames / self._capture_rate, samples))
            self._buffered += frames
            limit = int(self.config.ring_s * self._capture_rate)
            while self._buffered > limit:  # bounded: a stuck reader cannot grow memory without end
                dropped = len(self._chunks.popleft()[2])
                self._buffered -= dropped
                self._lost_samples += dropped
            self._cond.notify_all()

    # -- supervisor thread -----------------------------------------------------------------
    def start(self) -> None:
        self._supervisor.start()

    def _open(self) -> None:
        index, name = find_input_device(self.config.device)
        rate = self.config.capture_rate or self.sample_rate
        try:
            sd.check_input_settings(device=index, channels=1, dtype="float32", samplerate=rate)
        except (sd.PortAudioError, ValueError):
            rate = int(sd.query_devices(index)["default_samplerate"])  # resampled on read
        with self._cond:
            self._segment += 1
            self._capture_rate = rate
            self._last_callback = time.monotonic() + FIRST_CALLBACK_GRACE_S
        stream = sd.InputStream(
            device=index, channels=1, dtype="float32", samplerate=rate,
            blocksize=max(1, round(self.config.block_s * rate)), callback=self._callback,
        )
        stream.start()
        self._stream = stream
        self.name = name
        logger.info(f"microphone open: {name} at {rate} Hz")

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except sd.PortAudioError:
                pass

    def _healthy(self) -> bool:
        stream = self._stream
        if stream is None or not stream.active:
            return False
        with self._cond:
            return time.monotonic() - self._last_callback < self.config.stall_s

    def _supervise(self) -> None:
        retry = self.config.retry
        backoff = retry.initial_s
        lost_since: float | None = time.monotonic()  # waiting counts like recovering: both are bounded
        opened_once = False
        attempts = 0
        while not self._stop.is_set():
            if self._stream is not None:
                if self._healthy():
                    self._stop.wait(0.2)
                    continue
                logger.warning(f"microphone {self.name} lost (no audio for {self.config.stall_s} s); reopening")
                self.problem = f"lost: no audio for {self.config.stall_s:g} s"
                self._close()
                lost_since, self.state = time.monotonic(), "recovering"
            try:
                if attempts:
                    # Only a fresh PortAudio sees a re-plugged USB device (or a restarted sound server).
                    sd._terminate()
                    sd._initialize()
                attempts += 1
                self._open()
            except (AudioError, sd.PortAudioError, OSError) as error:
                self._close()
                self.problem = str(error)
                waited = time.monotonic() - lost_since if lost_since is not None else 0.0
                if self.state != "failed" and waited > retry.failed_after_s:
                    self.state = "failed"
                    doing = "reopened" if opened_once else "opened"
                    logger.warning(
                        f"microphone {self.name!r} not {doing} in {waited:.0f} s: {error}; reported as failed, "
                        f"still retrying every {retry.max_s:g} s at most"
                    )
                elif self.state == "failed":
                    logger.warning(
                        f"microphone {self.name!r} still not available ({error}); retrying in {backoff:.1f} s"
                    )
                elif attempts == 1:
                    logger.info(f"waiting for microphone {self.name!r} ({error}); retrying in {backoff:.1f} s")
                else:
                    logger.debug(f"microphone not available ({error}); retrying in {backoff:.1f} s")
                if self.on_retry:
                    self.on_retry()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, retry.max_s)
                continue
            if opened_once:
                self.reopens += 1
            if self.state == "failed":
                logger.warning(f"microphone {self.name} available again after being reported failed")
            opened_once, lost_since, backoff, self.state = True, None, retry.initial_s, "healthy"
            self.problem = None
            if self.on_retry:
                self.on_retry()
        self._close()

    # -- reader (the daemon's capture loop) -------------------------------------------------
    def read(self, timeout_s: float) -> AudioBlock | None:
        with self._cond:
            if not self._chunks and not self._cond.wait_for(lambda: self._chunks, timeout=timeout_s):
                return None
            segment, wall, _ = self._chunks[0]
            pending = []
            while self._chunks and self._chunks[0][0] == segment:  # one segment per block
                pending.append(self._chunks.popleft()[2])
            self._buffered -= sum(len(p) for p in pending)
            rate = self._capture_rate
        if segment != self._read_segment:
            if self.anchor_time is None:
                self.anchor_time = wall
            # A new stream: continue the clock from where wall time says we are, never backwards.
            self._position = max(self._position, round((wall - self.anchor_time) * self.sample_rate))
            self._resampler = None if rate == self.sample_rate else soxr.ResampleStream(
                rate, self.sample_rate, 1, dtype="float32"
            )
            self._read_segment = segment
        samples = np.concatenate(pending)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        block = AudioBlock(samples.astype(np.float32, copy=False), self._position)
        self._position += len(samples)
        return block

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=3)
        self._close()
        self.state = "finished"
