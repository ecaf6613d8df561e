"""Merging consecutive windows that say the same thing into one event with a start and an end.

Overlapping windows describe the same sound several times. Two captions agree when they name the
same event labels (``labels_of``, the lexicon's caption -> labels function), else when their
normalised text is equal (no sentence encoder: that is an evaluation-only dependency, too heavy
for an edge device).
An event starts with its first window, is updated by each agreeing window, and ends after
``end_after`` windows that disagree or are silent (hysteresis: one odd window need not split it),
or at a gap in the audio. Its id is fixed at the start, so subscribers can follow it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

LabelsOf = Callable[[str], set[str]]


@dataclass
class Event:
    event_id: str
    start_sample: int
    end_sample: int
    caption: str
    labels: set[str] = field(default_factory=set)
    windows: int = 1


@dataclass(frozen=True)
class EventChange:
    phase: str  # start | update | end
    event: Event


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def make_agreement(labels_of: LabelsOf | None = None) -> Callable[[str, str], bool]:
    """``agree(a, b)``: same non-empty label set, else same words."""

    def agree(a: str, b: str) -> bool:
        if labels_of is not None:
            labels_a, labels_b = labels_of(a), labels_of(b)
            if labels_a or labels_b:
                return labels_a == labels_b
        return _normalise(a) == _normalise(b)

    return agree


class EventTracker:
    def __init__(
        self,
        agree: Callable[[str, str], bool],
        *,
        labels_of: LabelsOf | None = None,
        end_after: int = 1,
        id_prefix: str = "",
    ):
        self.agree, self.labels_of, self.end_after, self.id_prefix = agree, labels_of, end_after, id_prefix
        self.current: Event | None = None
        self._misses = 0

    def _end(self) -> list[EventChange]:
        ended, self.current, self._misses = self.current, None, 0
        return [EventChange("end", ended)] if ended is not None else []

    def _start(self, start: int, end: int, caption: str) -> list[EventChange]:
        labels = self.labels_of(caption) if self.labels_of else set()
        self.current = Event(f"{self.id_prefix}{start}", start, end, caption, set(labels))
        return [EventChange("start", self.current)]

    def observe(self, start_sample: int, end_sample: int, caption: str) -> list[EventChange]:
        """A captioned window (in stream order) -> the event changes it causes."""
        changes: list[EventChange] = []
        if self.current is not None and start_sample > self.current.end_sample:
            changes += self._end()  # a gap in the audio: whatever it was, we did not hear it end
        if self.current is None:
            return changes + self._start(start_sample, end_sample, caption)
        if self.agree(self.current.caption, caption):
            event = self.current
            event.end_sample, event.caption, event.windows, self._misses = end_sample, caption, event.windows + 1, 0
            if self.labels_of:
                event.labels = set(self.labels_of(caption))
            return changes + [EventChange("update", event)]
        self._misses += 1
        if self._misses >= self.end_after:
            changes += self._end() + self._start(start_sample, end_sample, caption)
        return changes

    def observe_silence(self) -> list[EventChange]:
        """A window below the silence gate counts against the open event."""
        if self.current is None:
            return []
        self._misses += 1
        return self._end() if self._misses >= self.end_after else []

    def close(self) -> list[EventChange]:
        """End the open event (shutdown, reload)."""
        return self._end()
