"""The audio clock: sample index -> wall-clock time, kept on the wall clock for live sources.

A sample clock anchored once (``anchor + sample / rate``) inherits the error of the device's crystal:
a microphone 50 ppm fast delivers 16,000.8 samples a second, so after a day its timestamps are 4.3 s
ahead of the wall clock (and latencies measured against them grow with run time). ``AudioClock``
starts as exactly that clock and, for sources paced by a device (``disciplined``; not files read
``--fast``), compares it once a second with when the audio really arrived: the least delayed block of
the second gives the phase error (arrival time minus the clock's time of the block's last sample).
A proportional-integral servo, critically damped, turns the phase error into a rate correction:

    drift  += phase / tau**2 * dt        (the integral: the device's measured rate error)
    period  = (1 - drift + 2 * phase / tau) / sample_rate   (seconds per sample, from now on)

with ``phase`` in seconds (negative when the clock runs ahead of the arrivals) and ``drift`` a
fraction (positive: the device runs fast). The time constant ``tau`` grows from ``TAU_MIN_S`` to
``TAU_MAX_S`` as the clock locks, so the first minute converges quickly and later corrections are
slow and insensitive to jitter. It is a type-2 loop: a constant rate error leaves no lasting phase
error.

A phase error beyond ``MAX_PHASE_S`` is a step (the audio server re-buffered, say), not a rate error:
it is slewed out at up to ``MAX_SLEW`` and kept from the loop, so it is gone in seconds and the drift
estimate does not wind up. A clock ahead of the least delayed arrival (audio times later than the
samples reached the process) is certainly wrong, since no sample arrives before it was recorded, and
is slewed at once; one behind only after ``LATE_AFTER`` updates in a row (late arrivals alone, a
stalled second, are no clock error).

Guarantees: time is continuous and strictly increasing in the sample index, because the rate only
changes at the newest sample seen (a breakpoint), stays within ``MAX_CORRECTION`` of nominal (plus
``MAX_SLEW`` while a step is slewed out), and the loop's phase input is limited to
``MAX_PHASE_S`` per update; and the time of a sample at or before the
newest breakpoint never changes afterwards, so a timestamp once published stays what it was (except
for samples older than the last 3/4 ``MAX_BREAKPOINTS`` corrections, 51 minutes: their breakpoints are
merged into one segment from the anchor at its mean rate, which moves them by at most the phase
error of the time, a few milliseconds).
The exceptions are explicit: a gap in the stream (a device that was lost) and audio times more than
``STEP_S`` behind the arrivals for ``STEP_AFTER`` updates in a row (samples lost without a gap) move
the clock forward to the arrivals, never backward.
"""

from __future__ import annotations

import bisect
import math
import threading
from datetime import datetime, timezone

from loguru import logger

UPDATE_S = 1.0  # audio seconds between corrections
TAU_MIN_S, TAU_MAX_S = 10.0, 60.0  # servo time constant while locking, and once locked
MAX_CORRECTION = 2000e-6  # rate correction limit (2000 ppm); crystals are within +-100 ppm
MAX_PHASE_S = 0.005  # the loop's phase input at most: beyond, a stalled second or a step, no rate error
MAX_SLEW = 0.01  # how fast a step of the phase is slewed out (10 ms in a second, every other second)
STEP_S, STEP_AFTER = 0.5, 3  # audio times this far behind the arrivals for this many updates: step forward
LATE_AFTER = 10  # updates in a row more than MAX_PHASE_S behind the arrivals: a step, slewed out
MAX_BREAKPOINTS = 4096  # about 68 min of corrections; older ones are merged


class AudioClock:
    """Maps sample indexes to unix time; thread-safe (capture observes, the other threads read)."""

    def __init__(self, sample_rate: int, anchor_time: float, *, disciplined: bool = False, anchor_sample: int = 0):
        self.sample_rate = int(sample_rate)
        self.anchor_time = float(anchor_time)
        self.disciplined = disciplined
        self._lock = threading.Lock()
        # Breakpoints: from _samples[i] on, time = _times[i] + (sample - _samples[i]) * _periods[i].
        self._samples = [int(anchor_sample)]
        self._times = [float(anchor_time)]
        self._periods = [1.0 / self.sample_rate]
        self._drift = 0.0  # the integral term: the device's rate error (fraction; positive = fast)
        self._locked_s = 0.0  # audio seconds under discipline (sets the time constant)
        self._updates = 0
        self._interval_from: int | None = None  # first sample of the current update interval
        self._floor = math.inf  # least phase error (least delayed arrival) in the interval
        self._behind = 0  # consecutive updates with audio times more than STEP_S behind
        self._last_end: int | None = None
        self._saturated = False
        self._slewed = False  # the last update slewed a step of the phase out
        self._late = 0  # consecutive updates with audio times more than MAX_PHASE_S behind

    # -- reading -----------------------------------------------------------------------------------
    def time_of(self, sample: int) -> float:
        with self._lock:
            return self._time_of(sample)

    def _time_of(self, sample: int) -> float:
        i = max(0, bisect.bisect_right(self._samples, sample) - 1)
        return self._times[i] + (sample - self._samples[i]) * self._periods[i]

    def iso(self, sample: int) -> str:
        """ISO 8601 in UTC with microseconds, e.g. ``2025-01-31T12:00:03.250000Z``."""
        moment = datetime.fromtimestamp(self.time_of(sample), tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @property
    def drift_ppm(self) -> float | None:
        """The device's measured rate error in ppm (positive: it delivers more samples a second than its
        nominal rate), or None when not measured (not disciplined, or before the first correction)."""
        with self._lock:
            return self._drift * 1e6 if self.disciplined and self._updates else None

    # -- discipline (capture thread) ---------------------------------------------------------------
    def observe(self, start_sample: int, end_sample: int, arrived_at: float) -> None:
        """A block of samples ``[start_sample, end_sample)`` arrived at unix time ``arrived_at``."""
        if not self.disciplined or end_sample <= start_sample:
            return
        with self._lock:
            if self._last_end is not None and start_sample != self._last_end:
                self._gap(start_sample, end_sample, arrived_at)
            self._last_end = end_sample
            if self._interval_from is None:
                self._interval_from = start_sample
            self._floor = min(self._floor, arrived_at - self._time_of(end_sample))
            if (end_sample - self._interval_from) >= UPDATE_S * self.sample_rate:
                self._update(end_sample)

    def _gap(self, start_sample: int, end_sample: int, arrived_at: float) -> None:
        """The source skipped samples (a lost device came back): restart at the arrival, never backwards."""
        arrived_start = arrived_at - (end_sample - start_sample) * self._periods[-1]
        self._breakpoint(start_sample, max(self._time_of(start_sample), arrived_start))
        self._interval_from, self._floor = start_sample, math.inf

    def _update(self, sample: int) -> None:
        elapsed = (sample - self._interval_from) / self.sample_rate
        phase, self._floor, self._interval_from = self._floor, math.inf, sample
        self._updates += 1
        self._behind = self._behind + 1 if phase > STEP_S else 0
        if self._behind >= STEP_AFTER:  # samples were lost without a gap (an overrun): catch up at once
            logger.warning(f"audio times {phase:.2f} s behind the wall clock (samples lost?); moving the clock forward")
            self._breakpoint(sample, self._time_of(sample) + phase)
            self._behind = 0
            return
        # A phase error beyond MAX_PHASE_S is a step, not a rate error (one within the loop's range
        # makes at most 2 ms a second): the audio server re-buffered, say. Fed to the loop it would take
        # minutes and wind up the drift estimate (an overshoot after), so it is slewed out within
        # seconds instead and kept from the loop. Ahead of the least delayed arrival is certainly wrong
        # (no sample arrives before it was recorded) and is slewed at once; behind may be late arrivals
        # only (a stalled second), so it has to hold for LATE_AFTER updates in a row first.
        # An interval the clock was slewed in measures the error from before the slew (its earliest
        # blocks carry it whole), so it is not read; the loop holds its rate for it.
        slew, slewed, self._slewed = 0.0, self._slewed, False
        if not slewed:
            self._late = self._late + 1 if phase > MAX_PHASE_S else 0
            if phase < -MAX_PHASE_S or self._late >= LATE_AFTER:
                slew = math.copysign(min(abs(phase) / elapsed, MAX_SLEW), -phase)
                self._slewed = True
        if slewed or abs(phase) > MAX_PHASE_S:
            phase = 0.0  # the loop sees rate errors only
        self._locked_s += elapsed
        tau = min(max(self._locked_s / 3.0, TAU_MIN_S), TAU_MAX_S)
        self._drift = _limit(self._drift - phase / tau**2 * elapsed)
        correction = _limit(self._drift - 2.0 * phase / tau) + slew
        if abs(self._drift) >= MAX_CORRECTION and not self._saturated:
            self._saturated = True
            logger.warning(
                f"the audio device's clock is off by more than {MAX_CORRECTION * 1e6:.0f} ppm of its "
                f"{self.sample_rate} Hz; audio times may drift (is the device's rate set right?)"
            )
        self._breakpoint(sample, self._time_of(sample), (1.0 - correction) / self.sample_rate)

    def _breakpoint(self, sample: int, at: float, period: float | None = None) -> None:
        period = self._periods[-1] if period is None else period
        if sample <= self._samples[-1]:  # never rewrite the past
            return
        self._samples.append(sample)
        self._times.append(at)
        self._periods.append(period)
        if len(self._samples) > MAX_BREAKPOINTS:  # merge the oldest into the anchor's segment (its mean rate)
            cut = slice(1, 1 + MAX_BREAKPOINTS // 4)
            del self._samples[cut], self._times[cut], self._periods[cut]
            self._periods[0] = (self._times[1] - self._times[0]) / (self._samples[1] - self._samples[0])


def _limit(value: float) -> float:
    return min(max(value, -MAX_CORRECTION), MAX_CORRECTION)
