"""The caption lexicon: the words that name each sound class, in both directions.

Forwards, the scene captioner asks an entry for noun and verb phrases ("a dog" + "barks").
Backwards, ``Lexicon.labels_in_caption`` finds which classes a caption mentions, for event-F1 in
evaluation and for merging events in the daemon. Matching works on crude stems of words with
articles and auxiliaries dropped, so "Dogs are barking." and "a dog barked" both hit "dog barking";
where two known phrases overlap in a caption the longer wins ("a car horn honks" is the car horn,
not the car engine), and a phrase that belongs to several classes ("a man", "someone") names
none of them by itself.

The data lives in ``lexicon.yaml`` next to this file; its header documents the fields.
"""

from __future__ import annotations

import functools
import gzip
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edge_dac.const import CAPTION_PAIRS_PATH, CAPTION_TRIPLES_PATH, LEXICON_PATH
from edge_dac.errors import ConfigError

SPEECH_CLASSES = ("man speaking", "woman speaking", "person speaking", "child speaking")
# Words that carry no event meaning and would otherwise split phrases ("the wind is blowing").
STOPWORDS = frozenset(
    ["a", "an", "the", "is", "are", "was", "were", "be", "being", "been", "some", "its", "it", "their", "his", "her"]
)
ARTICLES = ("a ", "an ", "the ", "some ")
ENTRY_FIELDS = {"noun", "verb", "ing", "also", "plural", "background", "settings", "labels", "skip"}
LABEL_FIELDS = {"noun", "verb", "ing", "also", "plural"}


# Words that start a new clause (or a phrase with its own verb): "a dog barks while rain falls".
CLAUSE_JOINERS = frozenset(
    {",", "and", "while", "as", "then", "when", "before", "after", "until", "followed", "but", "so", "beside",
     "over", "under", "with", "from", "amid", "against", "behind"}
)


def stem(word: str) -> str:
    """A crude English stemmer, enough to make inflections of one verb or noun meet:
    barks/barking/barked -> bark, whistles/whistling -> whistl, flies -> fly, running -> run."""
    w = word
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
        w = _undouble(w)
    elif len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif (len(w) > 3 and w.endswith("oes")) or (  # goes, echoes; buzzes, crashes, screeches
        len(w) > 4 and w.endswith("es") and (w[-3] in "sxz" or w.endswith(("ches", "shes")))
    ):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    elif len(w) > 5 and w.endswith("ed"):
        w = _undouble(w[:-2])
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _undouble(w: str) -> str:
    """running -> runn -> run, but buzzing -> buzz and rolling -> roll stay doubled."""
    if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "aeiouslzf":
        return w[:-1]
    return w


def tokens(text: str) -> list[str]:
    """Lower-case word stems of ``text`` without articles/auxiliaries: "The dogs are barking" -> [dog, bark]."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'s ", " "))
    return [stem(w) for w in words if w not in STOPWORDS]


def caption_words(caption: str) -> list[str]:
    """A caption's words in order, a comma counting as one: "as a dog barks, rain falls" ->
    [as, a, dog, barks, ",", rain, falls]."""
    return caption.replace(",", " , ").split()


def strip_article(noun: str) -> str:
    """"a dog" -> "dog"; used for "distant dog" and "the sound of dog" style phrasing."""
    for article in ARTICLES:
        if noun.startswith(article):
            return noun[len(article) :]
    return noun


@dataclass(frozen=True)
class LexiconEntry:
    """How one sound class (or one catalog label of it) is put into words."""

    label: str  # the event class this entry belongs to
    noun: tuple[str, ...]
    verb: tuple[str, ...]
    ing: tuple[str, ...]
    also: tuple[str, ...] = ()
    plural: bool = False
    background: bool = False
    settings: tuple[str, ...] = ()
    catalog_label: str | None = None  # set for a label-specific override

    @property
    def is_speech(self) -> bool:
        return self.label in SPEECH_CLASSES


@dataclass
class Lexicon:
    """All entries, keyed by event class, plus the phrase table used to read captions back."""

    entries: dict[str, LexiconEntry]
    label_entries: dict[str, LexiconEntry]  # catalog label -> entry (override or the class entry)
    skipped: dict[str, frozenset[str]]  # event class -> catalog labels left out
    _phrases: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict, repr=False)
    _longest: int = 1
    _verbs_of: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)  # noun -> verb stems
    _verbs: frozenset[str] = frozenset()  # every verb stem of the lexicon
    _noun_pairs: frozenset[tuple[str, str]] = frozenset()  # word pairs inside a noun ("train whistle")

    @property
    def labels(self) -> list[str]:
        """The event classes the lexicon can caption, sorted."""
        return sorted(self.entries)

    def event_class(self, label: str) -> str:
        """The event class of a catalog label or class name ("footstep on gravel" -> "footsteps")."""
        if label in self.entries:
            return label
        if label in self.label_entries:
            return self.label_entries[label].label
        raise KeyError(f"{label!r} is not in the caption lexicon")

    def covers(self, class_name: str, label: str) -> bool:
        """Whether a catalog row (its class, or its label where the class is empty) can be captioned."""
        key = class_name or label
        return key in self.entries and label not in self.skipped.get(key, frozenset())

    def entry(self, label: str, class_name: str | None = None) -> LexiconEntry:
        """The entry for an event class or a catalog label (label-specific wording where there is
        one); pass the catalog row's class for labels that simply take their class's wording."""
        if label in self.label_entries:
            return self.label_entries[label]
        for key in (label, class_name):
            if key in self.entries:
                return self.entries[key]
        raise KeyError(f"{label!r} is not in the caption lexicon")

    def event_words(self, label: str) -> set[str]:
        """Every phrase that names this class (or catalog label's class) in a caption, as written
        in the lexicon: nouns without articles, synonyms, the class name and its catalog labels."""
        key = self.event_class(label)
        words: set[str] = {key}
        for entry in [self.entries[key], *(e for e in self.label_entries.values() if e.label == key)]:
            words.update(strip_article(n) for n in entry.noun)
            words.update(entry.also)
            if entry.catalog_label:
                words.add(entry.catalog_label)
        return words

    def labels_in_caption(self, caption: str) -> set[str]:
        """The event classes a caption mentions through nouns, verbs or synonyms.

        Longest phrases are taken first and a word is used by one phrase only, so "a car horn
        honks" names "car horn" and not "car engine"; a phrase shared by several classes
        ("a man", "someone") names none of them.
        """
        words = tokens(caption)
        used = [False] * len(words)
        found: set[str] = set()
        for length in range(min(self._longest, len(words)), 0, -1):
            for start in range(len(words) - length + 1):
                if any(used[start : start + length]):
                    continue
                keys = self._phrases.get(tuple(words[start : start + length]))
                if keys is None:
                    continue
                used[start : start + length] = [True] * length
                if len(keys) == 1:
                    found |= keys
        return found

    def names_a_sound(self, caption: str) -> bool:
        """Whether a caption names anything that sounds: a class, or a sound's noun ("a man", "a
        hammer") even where its verb fits no class ("a man roars something")."""
        return any(self.word_class(word) == "<noun>" for word in tokens(caption)) or bool(
            self.labels_in_caption(caption)
        )

    def misfit_words(self, caption: str) -> tuple[str, str] | None:
        """The first two words where one sound's wording runs into another's, or None: a noun
        followed by a verb that none of that noun's sounds makes in the lexicon ("a siren
        applauds", "a telephone gobbles"), two verbs in a row ("a fire burns crackles"), two
        verbs in one clause ("a beeping calls out a fire crackles": no "and", "while", comma...
        between them) or two nouns of the lexicon in a row that no noun of it joins ("a tuba
        guitar", "a shotgun gun"). A parallel decoder's slips, where one position took its word
        from another sound; none of the corpus's 25,000 test references has one. Only known
        words count (a word the lexicon does not know is no evidence)."""
        words = re.findall(r"[a-z]+|,", caption.lower())
        stems = [stem(word) for word in words]
        finite = [self.is_finite_verb(word) for word in words]
        clause_verb: str | None = None
        for i, word in enumerate(words):
            if word in CLAUSE_JOINERS:
                clause_verb = None
            elif finite[i]:
                if clause_verb is not None:
                    return clause_verb, word
                clause_verb = word
        for i in range(len(words) - 1):
            noun, after = words[i], words[i + 1]
            fits = self._verbs_of.get(noun)
            if fits is None or (noun, after) in self._noun_pairs or words[i + 2 : i + 3] == ["by"]:
                continue  # not a noun; a noun of two words ("train whistle"); "close by", "passes by"
            if stems[i + 1] in self._verbs and stems[i + 1] not in fits:
                return noun, after
            if after in self._verbs_of and stems[i] not in self._verbs and stems[i + 1] not in self._verbs:
                return noun, after  # two nouns, neither also a verb ("sound", "chips")
        return None

    def is_finite_verb(self, word: str) -> bool:
        """A lexicon verb in the third person ("burns", "rattles") that is no noun as well."""
        return word.endswith("s") and stem(word) in self._verbs and word not in self._verbs_of

    def word_class(self, word: str) -> str:
        """What a word is to the lexicon: "<noun>" (a sound's head noun), "<ing>" (a participle),
        "<verb>" (any other form of a sound's verb: "barks", "tinkle"), or the word itself."""
        if word in self._verbs_of:
            return "<noun>"
        if stem(word) in self._verbs:
            return "<ing>" if word.endswith("ing") else "<verb>"
        return word

    def _index(self) -> None:
        # A one-word phrase that other classes use in their own wording ("chops wood", "a tom
        # booms", "falls to the ground") would fire on their captions, so it only counts inside
        # longer phrases ("wood cracks", "an explosion booms").
        used_in_phrases: dict[str, set[str]] = {}
        for entry in [*self.entries.values(), *self.label_entries.values()]:
            for phrase in (*entry.verb, *entry.ing, *entry.settings):
                for word in tokens(phrase):
                    used_in_phrases.setdefault(word, set()).add(entry.label)
        table: dict[tuple[str, ...], set[str]] = {}
        for key in self.entries:
            for phrase in self.event_words(key):
                stems = tuple(tokens(phrase))
                if not stems or (len(stems) == 1 and used_in_phrases.get(stems[0], set()) - {key}):
                    continue
                table.setdefault(stems, set()).add(key)
        self._phrases = {phrase: frozenset(keys) for phrase, keys in table.items()}
        self._longest = max(len(p) for p in self._phrases)
        # misfit_words: the verbs each noun takes (its head word: "a car horn" -> "horn"), over every
        # entry that writes it; a verb is a verb or participle phrase's first word past auxiliaries
        # ("is hit" -> "hit").
        verbs_of: dict[str, set[str]] = {}
        pairs: set[tuple[str, str]] = set()
        for entry in [*self.entries.values(), *self.label_entries.values()]:
            verbs = [next((w for w in p.split() if w not in STOPWORDS), None) for p in (*entry.verb, *entry.ing)]
            first_words = {stem(verb) for verb in verbs if verb}
            for noun in entry.noun:
                words = strip_article(noun).split()
                verbs_of.setdefault(words[-1], set()).update(first_words)
                pairs.update(zip(words, words[1:], strict=False))
        self._verbs_of = {noun: frozenset(verbs) for noun, verbs in verbs_of.items()}
        self._verbs = frozenset(set().union(*verbs_of.values()))
        self._noun_pairs = frozenset(pairs)


def _as_tuple(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected a list of phrases, got {value!r}")


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (allowed keys: {', '.join(sorted(allowed))})")


def parse_lexicon(data: object, source: str = "lexicon") -> Lexicon:
    """Build a ``Lexicon`` from the parsed YAML mapping; malformed data is a ``ConfigError``."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source}: expected a mapping of event classes to entries")
    entries: dict[str, LexiconEntry] = {}
    label_entries: dict[str, LexiconEntry] = {}
    skipped: dict[str, frozenset[str]] = {}
    for key, spec in data.items():
        where = f"{source}: entry '{key}'"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping with noun, verb and ing")
        _check_keys(spec, ENTRY_FIELDS, where)
        base = LexiconEntry(
            label=str(key),
            noun=_as_tuple(spec.get("noun"), f"{where}.noun"),
            verb=_as_tuple(spec.get("verb"), f"{where}.verb"),
            ing=_as_tuple(spec.get("ing"), f"{where}.ing"),
            also=_as_tuple(spec.get("also"), f"{where}.also"),
            plural=bool(spec.get("plural", False)),
            background=bool(spec.get("background", False)),
            settings=_as_tuple(spec.get("settings"), f"{where}.settings"),
        )
        if not (base.noun and base.verb and base.ing):
            raise ConfigError(f"{where}: needs at least one noun, verb and ing phrase")
        entries[base.label] = base
        skipped[base.label] = frozenset(_as_tuple(spec.get("skip"), f"{where}.skip"))
        for label, override in (spec.get("labels") or {}).items():
            lwhere = f"{where}.labels.{label}"
            override = override or {}
            if not isinstance(override, dict):
                raise ConfigError(f"{lwhere}: expected a mapping of overrides")
            _check_keys(override, LABEL_FIELDS, lwhere)
            label_entries[str(label)] = LexiconEntry(
                label=base.label,
                noun=_as_tuple(override.get("noun"), f"{lwhere}.noun") or base.noun,
                verb=_as_tuple(override.get("verb"), f"{lwhere}.verb") or base.verb,
                ing=_as_tuple(override.get("ing"), f"{lwhere}.ing") or base.ing,
                also=base.also + _as_tuple(override.get("also"), f"{lwhere}.also"),
                plural=bool(override.get("plural", base.plural)),
                background=base.background,
                settings=base.settings,
                catalog_label=str(label),
            )
    lexicon = Lexicon(entries=entries, label_entries=label_entries, skipped=skipped)
    lexicon._index()
    return lexicon


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """The lexicon shipped with the package (or one at ``path``), parsed once per file."""
    path = Path(path) if path is not None else LEXICON_PATH
    if not path.is_file():
        raise ConfigError(f"{path}: lexicon file not found")
    return _load_cached(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int) -> Lexicon:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_lexicon(data, source=str(path))


# Singular nouns that end in "s" ("a news report"): an article before them is no plural slip.
SINGULAR_IN_S = frozenset({"news", "bus", "gas", "lens", "series", "species", "chorus", "canvas", "circus", "walrus"})


@dataclass(frozen=True)
class CaptionPairs:
    """The adjacent word pairs of the corpus's captions (``caption_pairs.txt``, written by
    scripts/caption_pairs.py from train-split scene plans), to find where a caption runs two
    wordings together ("a tree crashes down traffic past": no caption has "down traffic").

    Sounds are many and a few recordings give each only some of its pairs, so a pair also counts
    as heard when it was heard with one of its words replaced by its lexicon class ("crickets
    chirp repeatedly" from "bees buzz repeatedly": "<verb> repeatedly"). Measured on 10,000
    test-split captions, which use labels and wordings the table never saw: 4 flagged (0.04 %),
    against 138 by the word pairs alone."""

    heard: frozenset[tuple[str, str]]
    heard_by_class: frozenset[tuple[str, str]]
    known: frozenset[str]
    lexicon: Lexicon

    def unheard(self, caption: str) -> list[tuple[str, str]]:
        """The pairs of ``caption`` the corpus never writes, even by class; only pairs of two
        words the table knows count (a word it never saw is no evidence)."""
        words = ["<s>", *caption_words(caption), "</s>"]
        return [(a, b) for a, b in zip(words, words[1:], strict=False) if self.unheard_pair(a, b)]

    def ends(self, word: str) -> bool:
        """Whether a caption of the corpus ends on ``word`` (the word itself, not its class)."""
        return (word, "</s>") in self.heard

    def unheard_pair(self, a: str, b: str) -> bool:
        """Whether the corpus never writes ``b`` right after ``a``, even by class. Two pairs count only
        as written, whatever the classes say: a caption's end ("and then a woman says": "<verb> </s>"
        is heard; none of the 50,000 test and val references ends on a word no caption ends on, 5 % of
        the shipped DAC's best test captions did) and "a" or "an" before a plural ("a crickets":
        "a <noun>" is heard)."""
        if a not in self.known or b not in self.known or (a, b) in self.heard:
            return False
        if b == "</s>":
            return True
        if a in ("a", "an") and b.endswith("s") and not b.endswith("ss") and b not in SINGULAR_IN_S:
            return ("a", b) not in self.heard and ("an", b) not in self.heard
        cls = self.lexicon.word_class
        return (cls(a), b) not in self.heard_by_class and (a, cls(b)) not in self.heard_by_class


def load_caption_pairs(path: str | Path | None = None, lexicon: Lexicon | None = None) -> CaptionPairs:
    """The word pairs shipped with the package (or at ``path``), for ``lexicon`` (the packaged
    one by default). A missing table finds nothing: the check is evidence, not a requirement."""
    path = Path(path) if path is not None else CAPTION_PAIRS_PATH
    lexicon = lexicon or load_lexicon()
    heard: set[tuple[str, str]] = set()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                a, b = line.split(" ")
                heard.add((a, b))
    by_class = {(lexicon.word_class(a), b) for a, b in heard} | {(a, lexicon.word_class(b)) for a, b in heard}
    known = {word for pair in heard for word in pair}
    return CaptionPairs(frozenset(heard), frozenset(by_class), frozenset(known), lexicon)


# Where a clause starts or a phrase attaches to one (a count, a manner, a place), the words either
# side combine freely and a few recordings show few of their combinations: a triple across such a
# join is no evidence (the pairs judge the join itself). Judged across them, 0.44 % of the corpus's
# 50,000 test and val references had a triple the table lacks ("a low note twice", "a shot near
# running machinery"); with them, 3.
CLAUSE_JOINS = frozenset({"and", "while", "as", "then", ",", "followed", "before", "after"})  # where clauses meet
PHRASE_JOINS = CLAUSE_JOINS | frozenset(
    {
        "twice", "once", "repeatedly", "several", "faintly", "nearby", "far", "loudly", "softly", "quietly", "again",
        "near", "over", "amid", "beside", "with", "in", "on", "for", "against", "along", "by", "into", "through", "at",
        "from", "under", "behind",
    }
)


@dataclass(frozen=True)
class CaptionTriples:
    """The runs of three adjacent words of the corpus's captions (``caption_triples.txt.gz``, written
    with the pairs by scripts/caption_pairs.py), to find a clause no caption could write although
    each of its pairs is common: "a helicopter is whines", "with music plays in the background", "a
    waterfall roaring the background".

    A triple also counts as heard with one or two of its words replaced by their lexicon classes (a
    verb in the third person is a class of its own), and no triple across a join of phrases is
    judged (``PHRASE_JOINS``). Measured on the corpus's 50,000 test and val references, which use
    labels and wordings the table never saw: 3 flagged (0.006 %), against 13.6 % of the stage-10
    DAC's best test captions and 0.7 % of its AR twin's (docs/dac-recipe.md)."""

    heard: frozenset[tuple[str, str, str]]
    heard_by_class: frozenset[tuple[str, str, str]]
    classes: dict[str, str]  # each known word's lexicon class (the word itself where it has none)

    def unheard(self, caption: str) -> list[tuple[str, str, str]]:
        """The triples of ``caption`` the corpus never writes, even by class, but those across a join
        of phrases; only triples of words the table knows count."""
        words = ["<s>", *caption_words(caption), "</s>"]
        return [
            triple
            for triple in zip(words, words[1:], words[2:], strict=False)
            if triple[1] not in PHRASE_JOINS and triple[2] not in PHRASE_JOINS
            and all(word in self.classes for word in triple) and triple not in self.heard
            and not (_by_class(triple, self.classes) & self.heard_by_class)
        ]


def _by_class(triple: tuple[str, str, str], classes: dict[str, str]) -> set[tuple[str, str, str]]:
    """``triple`` with one or two of its words replaced by their classes (those that have one)."""
    a, b, c = triple
    ca, cb, cc = classes[a], classes[b], classes[c]
    return {(ca, b, c), (a, cb, c), (a, b, cc), (ca, cb, c), (ca, b, cc), (a, cb, cc)} - {triple}


def _triple_class(word: str, lexicon: Lexicon) -> str:
    """A word's lexicon class, a verb in the third person apart ("<verb-s>"): "a bell is rung" is
    heard, "a helicopter is whines" never is."""
    return "<verb-s>" if lexicon.is_finite_verb(word) else lexicon.word_class(word)


def load_caption_triples(path: str | Path | None = None, lexicon: Lexicon | None = None) -> CaptionTriples:
    """The word triples shipped with the package (or at ``path``, gzipped text), for ``lexicon`` (the
    packaged one by default). A missing table finds nothing, as a missing pairs table."""
    path = Path(path) if path is not None else CAPTION_TRIPLES_PATH
    lexicon = lexicon or load_lexicon()
    heard: set[tuple[str, str, str]] = set()
    if path.is_file():
        for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines():
            if line and not line.startswith("#"):
                a, b, c = map(sys.intern, line.split(" "))  # a few thousand words in 116,085 triples: 34 -> 16 MB held
                heard.add((a, b, c))
    classes = {word: _triple_class(word, lexicon) for word in {word for triple in heard for word in triple}}
    by_class: set[tuple[str, str, str]] = set()
    for triple in heard:
        by_class |= _by_class(triple, classes)
    return CaptionTriples(frozenset(heard), frozenset(by_class), classes)


def catalog_labels(rows: Iterable[object]) -> set[str]:
    """Event classes of catalog rows (``class`` or, where empty, ``label``); handy for coverage checks."""
    return {getattr(r, "class_name", "") or getattr(r, "label", "") for r in rows}
