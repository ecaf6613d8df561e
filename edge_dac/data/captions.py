"""Reference captions written from what a scene actually holds.

Each scene gets five captions, one from each of five template families, so the references
differ in structure and not just in a synonym:

- ``narrative``: clauses in time order, "a dog barks twice, then a car horn honks in the rain"
- ``gerund``: AudioCaps-style noun phrases, "a dog barking followed by a car horn honking"
- ``setting_first``: the background first, "in the rain, a dog barks before a car horn honks"
- ``anchored``: one event as the time anchor, "after a dog barks, a car horn honks"
- ``listing``: plain "and"/"with" joins that claim no order, "a dog barks and a car horn honks"

Every caption names every placed event (``Lexicon.labels_in_caption`` reads it back), time words
follow the real onsets ("then"/"followed by" only when one ends before the next starts,
"while"/"as" when they overlap), counts follow the repeats ("twice", "repeatedly") and quiet
events are "in the distance". Captions are lower-case without a final period, 6 to 20 words
where the scene allows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_dac.lexicon import LexiconEntry, strip_article

MIN_WORDS, MAX_WORDS = 6, 20
CAPTIONS_PER_SCENE = 5
_OVERLAP_TOLERANCE_S = 0.05


@dataclass
class PlacedEvent:
    """One event as the mixer placed it; ``as_dict`` is what manifests store."""

    row: object  # the CatalogRow (first utterance for speech)
    entry: LexiconEntry
    event_class: str
    onset: float
    offset: float
    gain_db: float
    role: str  # background | foreground | speech
    count: int = 1
    level_db: float = 0.0  # level relative to the scene's foreground reference
    distant: bool = False

    def as_dict(self) -> dict:
        return {
            "label": self.row.label,
            "class": self.event_class,
            "onset": round(float(self.onset), 3),
            "offset": round(float(self.offset), 3),
            "gain_db": round(float(self.gain_db), 2),
            "md5": self.row.md5,
            "role": self.role,
            "count": int(self.count),
        }


class _Writer:
    """Phrase helpers bound to one scene and one random stream."""

    def __init__(self, events: list[PlacedEvent], rng: np.random.Generator, seconds: float):
        self.rng = rng
        self.seconds = seconds
        self.timeline = sorted((e for e in events if e.role != "background"), key=lambda e: (e.onset, e.offset))
        backgrounds = [e for e in events if e.role == "background"]
        self.background = backgrounds[0] if backgrounds else None
        self.compact = False  # set when captions run long: leave out counts and distance words

    def pick(self, options: list[str] | tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    # ---- one event

    def noun(self, e: PlacedEvent, adjective_ok: bool = True) -> str:
        noun = self.pick(e.entry.noun)
        personal = noun.startswith(("someone", "something"))
        if e.distant and adjective_ok and not self.compact and not personal and self.rng.random() < 0.4:
            bare = strip_article(noun)
            article = "a " if noun.startswith(("a ", "an ")) else ("the " if noun.startswith("the ") else "")
            return f"{article}distant {bare}"
        return noun

    def modifiers(self, e: PlacedEvent, noun: str) -> str:
        words = ""
        if self.compact:
            return words
        if e.count == 2:
            words += " twice"
        elif e.count >= 3:
            words += " " + self.pick(["repeatedly", "several times", "over and over"])
        if e.distant and "distant" not in noun:
            words += " " + self.pick(["in the distance", "far away"] + ([] if e.count > 1 else ["faintly"]))
        return words

    def clause(self, e: PlacedEvent) -> str:
        """"a dog barks twice", "distant thunder rumbles"."""
        noun = self.noun(e)
        return f"{noun} {self.pick(e.entry.verb)}{self.modifiers(e, noun)}"

    def gerund(self, e: PlacedEvent) -> str:
        """"a dog barking twice"."""
        noun = self.noun(e)
        return f"{noun} {self.pick(e.entry.ing)}{self.modifiers(e, noun)}"

    def setting(self, e: PlacedEvent) -> str:
        """"in the rain", "with traffic in the background"."""
        entry = e.entry
        noun = self.pick(entry.noun)
        generic = [
            f"with {noun} {self.pick(entry.ing)} in the background",
            f"as {noun} {self.pick(entry.verb)} in the background",
        ]
        if self.compact and entry.settings:
            return min(entry.settings, key=len)
        return self.pick(list(entry.settings) + generic if entry.settings else generic)

    # ---- time relations

    def overlaps(self, a: PlacedEvent, b: PlacedEvent) -> bool:
        return b.onset < a.offset - _OVERLAP_TOLERANCE_S

    def chain(self, style: str) -> str:
        """All timeline events joined with truthful time words; ``style`` is clause or gerund."""
        events = self.timeline
        render = self.clause if style == "clause" else self.gerund
        text = render(events[0])
        joiner = ""
        for a, b in itertools.pairwise(events):
            if self.overlaps(a, b):
                options = [" while ", " as "] if style == "clause" else [" with ", " and ", " along with "]
            else:
                options = ([", then ", " and then ", " before ", ", followed by "]
                           if style == "clause" else [" followed by ", " and then ", " then "])
            joiner = self.pick([o for o in options if o != joiner])  # "x while y as z", not "x while y while z"
            if joiner == ", followed by ":
                text += joiner + self.gerund(b)
            else:
                text += joiner + render(b)
        return text


# ---- template families: each returns one caption naming every event


def _narrative(w: _Writer) -> str:
    text = w.chain("clause") if w.timeline else ""
    if w.background:
        text = f"{text} {w.setting(w.background)}" if text else w.clause(w.background)
    return text


def _gerund(w: _Writer) -> str:
    text = w.chain("gerund") if w.timeline else ""
    if w.background:
        bg = w.background
        tail = w.pick([f"with {w.gerund(bg)} in the background", f"over {w.gerund(bg)}"])
        text = f"{text} {tail}" if text else f"{w.gerund(bg)} continuously"
    return text


def _setting_first(w: _Writer) -> str:
    if w.background:
        bg = w.background
        lead = w.pick([w.setting(bg), f"{w.clause(bg)} as"])
        if lead.endswith(" as"):
            return f"{lead} {w.chain('clause')}" if w.timeline else w.clause(bg)
        return f"{lead}, {w.chain('clause')}" if w.timeline else f"{lead}, {w.clause(bg)}"
    first = w.timeline[0]
    if first.onset > 1.5 and not w.compact:
        lead = "after a moment of quiet, "
    else:
        lead = w.pick(["first ", "at first "] if len(w.timeline) > 1 else ["suddenly ", "all at once "])
    return lead + w.chain("clause")


def _anchored(w: _Writer) -> str:
    events = w.timeline
    if len(events) >= 2:
        a, b = events[0], events[1]
        if w.overlaps(a, b):
            head = w.pick([f"{w.clause(b)} while {w.clause(a)}", f"as {w.clause(a)}, {w.clause(b)}"])
        else:
            head = w.pick([f"after {w.clause(a)}, {w.clause(b)}", f"{w.clause(b)} after {w.gerund(a)}"])
        for prev, nxt in itertools.pairwise(events[1:]):
            head += (" while " if w.overlaps(prev, nxt) else ", then ") + w.clause(nxt)
    elif events:
        head = w.clause(events[0])
        if events[0].offset < w.seconds - 2 and not w.background:
            head += w.pick([" and then it goes quiet", ", then silence"])
    else:
        head = ""
    if w.background:
        head = f"{head} {w.setting(w.background)}" if head else w.clause(w.background)
    return head


def _listing(w: _Writer) -> str:
    parts = [w.clause(e) for e in w.timeline]
    if len(parts) > 1 and all(not w.overlaps(a, b) for a, b in itertools.pairwise(w.timeline)):
        text = ", ".join(parts[:-1]) + " and " + parts[-1]
    else:
        text = " and ".join(parts)
    if w.background:
        if text:
            text += " " + w.pick([f"with {w.gerund(w.background)}", w.setting(w.background)])
        else:
            text = w.clause(w.background)
    return text


FAMILIES: dict[str, Callable[[_Writer], str]] = {
    "narrative": _narrative,
    "gerund": _gerund,
    "setting_first": _setting_first,
    "anchored": _anchored,
    "listing": _listing,
}


_QUIET_ENDINGS = (", then silence", " and then it goes quiet")


def _pad(w: _Writer, text: str, min_words: int = MIN_WORDS) -> str:
    """Lengthen a short caption with something true about the scene."""
    for ending in _QUIET_ENDINGS:  # "a dog barks nearby, then silence", not "..., then silence nearby"
        if text.endswith(ending):
            return _pad(w, text[: -len(ending)], min_words - len(ending.replace(",", "").split())) + ending
    options = []
    if not w.background:
        options += [" in a quiet place", " against a quiet background", " in an otherwise quiet setting"]
    if w.timeline and all(not e.distant for e in w.timeline):
        options += [" close by", " nearby"]
    options += [" in a short clip", " for a moment"]
    while len(text.split()) < min_words and options:
        extra = options.pop(int(w.rng.integers(len(options))))
        if extra.strip() not in text:
            text += extra
    return text


def write_captions(
    events: list[PlacedEvent], rng: np.random.Generator, seconds: float, count: int = CAPTIONS_PER_SCENE
) -> list[str]:
    """``count`` different captions for the placed ``events``, one family each (cycling when
    ``count`` exceeds the five families)."""
    return [text for _, text in write_family_captions(events, rng, seconds, count)]


def family_order(rng: np.random.Generator) -> list[str]:
    """The order in which a scene's captions take the families: the first draw of its caption rng."""
    names = list(FAMILIES)
    return [names[i] for i in rng.permutation(len(names))]


def write_family_captions(
    events: list[PlacedEvent], rng: np.random.Generator, seconds: float, count: int = CAPTIONS_PER_SCENE
) -> list[tuple[str, str]]:
    """As :func:`write_captions`, each caption with the name of its template family."""
    if not events:
        return [("silence", "silence")] * count
    w = _Writer(events, rng, seconds)
    order = family_order(rng)
    captions: list[tuple[str, str]] = []
    for i in range(count):
        name = order[i % len(order)]
        best = None
        for attempt in range(12):  # retry for a new wording, or a shorter one when it runs long
            w.compact = attempt >= 4
            text = " ".join(_pad(w, FAMILIES[name](w)).split())
            if text not in (c for _, c in captions) and len(text.split()) <= MAX_WORDS:
                best = text
                break
            if best is None or len(text.split()) < len(best.split()):
                best = text
        w.compact = False
        captions.append((name, best))
    return captions
