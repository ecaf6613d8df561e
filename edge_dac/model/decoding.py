"""Decoding: one entry point, ``decode(model, audio, options)``, for every caller and backend.

``DecodingTask`` owns the whole path from waveforms to ranked captions: the starting noise (drawn on
the CPU from the seed and each window's own samples, so the same audio gets the same caption at any
position, in any batch and on any backend or device), candidate expansion (K rows per window, each
with its wording code), the DDIM loop, and ranking. A backend supplies only a ``Runner``: its audio
graph (``context``: what the step reads, and the event head's clip probabilities) and its denoiser
step (``step``); ``EagerRunner`` is the model's own modules.
The AR twin decodes greedily or by beam search from the same task.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from edge_dac.lexicon import (
    CLAUSE_JOINS,
    STOPWORDS,
    CaptionPairs,
    CaptionTriples,
    Lexicon,
    caption_words,
    load_caption_pairs,
    load_caption_triples,
    load_lexicon,
    stem,
    strip_article,
)
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.hearing import HEARING_CHUNK_SAMPLES
from edge_dac.model.tokenizer import decode_tokens

if TYPE_CHECKING:
    from edge_dac.model.captioner import Captioner


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn a clip into captions.

    steps: denoiser evaluations (DAC); candidates: captions per clip (DAC samples, AR beams);
    beam_size: AR only (1 = greedy); seed: makes DAC's starting noise reproducible;
    rank: "mbr" picks the candidate that agrees most with the others, "score" the most probable;
    "auto" is "mbr" for DAC's independent samples and "score" for AR beams (beams are not samples,
    so their consensus is not a good estimate of the best caption); event_guidance: the decoder's
    logits get ``event_bias`` from the event head's clip probabilities at every step, so the words
    of the sounds the head hears are written and those of sounds it does not hear are not (0 turns
    it off; a model without the head decodes as without it); match_events: then the
    candidates that name what the model's event head hears come first (``event_agreement``; a
    model without the head keeps the order above); prefer_whole: whole captions
    come first, in that order, then whole but redundant ones (``is_redundant``: one sound named
    twice), then whole ones with a verb of another sound (``is_misfit``: "a siren applauds"), then
    the broken ones; repair: a broken caption is cut back to its
    longest whole prefix that ends before a clause ("a woman speaks and a man a" -> "a woman
    speaks"), so what a user reads is a phrase, minus the tail the decoder did not finish; and,
    after the ranking, a misfit one is mended (``mend_misfit``) where that leaves a whole sentence.
    """

    steps: int = 2  # the shipped model's sampler is distilled to 2 (stage 9 of docs/dac-recipe.md)
    candidates: int = 5
    beam_size: int = 1
    seed: int | None = 0
    rank: str = "auto"
    noise_scale: float = 1.0
    event_guidance: float = 2.0  # how hard the event head's clip probabilities steer the words (0: off)
    match_events: bool = True  # candidates that agree with the event head first
    prefer_whole: bool = True  # whole captions first, then redundant, then misfit, then broken ones
    repair: bool = True  # cut a broken caption back to a whole prefix; drop a redundant one's repeats; mend misfits

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.rank not in ("auto", "mbr", "score"):
            raise ValueError(f"rank must be 'auto', 'mbr' or 'score', got {self.rank!r}")


@dataclass(frozen=True)
class Candidate:
    caption: str
    score: float  # mean log-probability per token: higher is more confident

    def to_dict(self) -> dict[str, object]:
        return {"caption": self.caption, "score": round(self.score, 4)}


def cut_and_collapse(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Tokens up to the first [EOS]/[PAD], with adjacent repeats collapsed ("a dog dog barks").

    Parallel decoders tend to write the same token in two neighbouring positions; an audio
    caption virtually never needs a word twice in a row.
    """
    out: list[int] = []
    for token in ids:
        if token in (eos_id, pad_id):
            break
        if not out or out[-1] != token:
            out.append(token)
    return out


_JOINERS = {"and", "then", ","}


def collapse_repeated_words(text: str, max_phrase: int = 4) -> str:
    """Drop a phrase that repeats right after itself, directly or after "and"/"then"/",".

    The typical fault of parallel decoding ("an explosion and an explosion", "a dog dog barks");
    a caption never needs the same phrase twice in a row, counts are written as "twice".
    """
    words = text.split()
    changed = True
    while changed:
        changed = False
        for n in range(max_phrase, 0, -1):
            for i in range(len(words) - n):
                phrase = words[i : i + n]
                if words[i + n : i + 2 * n] == phrase:
                    del words[i + n : i + 2 * n]
                elif i + n < len(words) and words[i + n] in _JOINERS and words[i + n + 1 : i + 2 * n + 1] == phrase:
                    del words[i + n : i + 2 * n + 1]
                else:
                    continue
                changed = True
                break
            if changed:
                break
    return " ".join(words)


# Words a caption cannot end on, and that cannot follow an article: the fragments a parallel decoder
# leaves where it averaged several wordings ("a gun fires and a twice and a", "a drum an a with").
ARTICLES = frozenset({"a", "an", "the"})
FUNCTION_WORDS = ARTICLES | frozenset(
    {
        "and", "or", "but", "while", "as", "then", "with", "without", "in", "on", "at", "of", "by", "for",
        "from", "to", "into", "onto", "over", "under", "near", "during", "before", "after", "behind",
        "through", "across", "is", "are", "was", "were", "being", "been", "its", "their", "some", "that", "which",
        "who", "followed", ",",
    }
)


# Prepositions that also end a phrase as adverbs ("over and over", "close by", "a car drives by").
ADVERB_PARTICLES = frozenset({"over", "by"})
# Words a clause cannot stop on: before the caption's end or before a comma.
CANNOT_END = FUNCTION_WORDS - ADVERB_PARTICLES
# Adverbs and counts that end a clause: an article before one is a hole where a noun was meant.
NOT_AFTER_ARTICLE = frozenset(
    {"twice", "once", "repeatedly", "again", "several", "times", "nearby", "away", "loudly", "softly", "quietly"}
)


def is_broken(caption: str) -> bool:
    """A caption that is not a whole phrase: empty, ending in a function word, with an article
    right before a function word, an adverb or a count ("a with", "the and", "a twice"), a clause
    that stops on a function word before a comma ("a xylophone is, followed by", "a gun being,
    then"), an article that does not fit the next word ("an drums", "a owl") or stands before a
    verb of the lexicon ("and a roars": none of the corpus's 50,000 test and val references), or an article and an
    adjective or participle with no noun after them ("a tuba plays a low and then", "with a
    flowing in the background"), or two wordings run into each other: a pair of adjacent words
    that no caption of the corpus writes ("a tree crashes down traffic past", "rain patters on a
    windshield chainsaw overhead"; ``CaptionPairs``), or one that stops where no caption of the corpus
    stops ("and then a woman says"), or one that names nothing that sounds ("after a moment of quiet":
    an opening cut from its clause; every one of the corpus's 50,000 test and val references names a
    class), or a sound's noun, its verb and the noun again ("a fire crackles fire crackling": two
    wordings of one sound stuttered together; none of those references), or a clause with a run of three
    words no caption of the corpus writes although each pair is common ("a helicopter is whines",
    "with music plays in the background"; ``CaptionTriples``: 3 of those references, whose labels and
    wordings the table never saw), or a clause opened by "as" or
    "while" that ends on its noun with no verb ("birds chirp as music", "a crowd boos while a fire":
    none of those references; 0.6-0.8 % of DAC's best captions before this rule), or a clause whose noun
    takes a verb's particle with no verb ("a train by", "as a crowd along": none of those references), or
    one that gives an "as"/"while" clause's noun a participle instead of its verb ("as rain falling"),
    or that is only a subordinate clause ("after a crow caws", no comma or "then" to a main clause):
    none of the corpus's 515,000 test, val and train captions."""
    words = caption.replace(",", " , ").split()
    if not words or words[-1] in CANNOT_END:
        return True
    for i, word in enumerate(words[1:], 1):  # "a tuba plays a low and then", "with a flowing in": no noun
        modifier = word in ADJECTIVES or (len(word) > 4 and word.endswith("ing") and word not in ING_NOUNS)
        if modifier and words[i - 1] in ARTICLES and (i + 1 == len(words) or words[i + 1] in FUNCTION_WORDS):
            return True
    for word, after in zip(words, words[1:], strict=False):
        if after == "," and word in CANNOT_END:
            return True
        if word in ARTICLES and (  # "a with", "a twice", "and a roars"
            after in FUNCTION_WORDS or after in NOT_AFTER_ARTICLE or _lexicon().is_finite_verb(after)
        ):
            return True
        if (word == "an" and after[0] not in "aeiouh") or (word == "a" and after[0] in "aeio" and after != "one"):
            return True
    if words[-2:] == ["followed", "by"]:  # cut off mid-clause; its "by" alone ends "passes by"
        return True
    lexicon = _lexicon()
    for noun, verb, again in zip(words, words[1:], words[2:], strict=False):  # "a waterfall roaring waterfall"
        if noun == again and lexicon.word_class(noun) == "<noun>" and lexicon.word_class(verb) in ("<ing>", "<verb>"):
            return True
    if any(_verbless_clause(words, i) or _participle_clause(words, i) for i, word in enumerate(words)
           if word in ("as", "while")):
        return True
    if words[0] in SUBORDINATE_OPENERS and "," not in words and "then" not in words:  # "after a crow caws"
        return True
    if _particle_without_verb(words):
        return True
    if _caption_pairs().unheard(caption):  # a run-on, or an end no corpus caption has
        return True
    if _caption_triples().unheard(caption):  # "a helicopter is whines": each pair common, the clause never
        return True
    return not lexicon.names_a_sound(caption)


def _verbless_clause(words: list[str], opener: int) -> bool:
    """Whether the clause after ``words[opener]`` ("as", "while") is a short noun phrase that runs to
    the end or a comma with no verb: the subject of a clause whose verb was never written."""
    end = words.index(",", opener) if "," in words[opener:] else len(words)
    clause, lexicon = words[opener + 1 : end], _lexicon()
    return (
        1 <= len(clause) <= 3
        and lexicon.word_class(clause[-1]) == "<noun>"
        and not any(lexicon.word_class(word) in ("<verb>", "<ing>") for word in clause)
    )


# Where a clause's own words stop: a join of clauses, or a phrase of company or place, whose participles
# and particles are its own ("as footsteps sound with birds singing", "a car passes by in the rain").
_CLAUSE_STOPS = CLAUSE_JOINS | {"in", "with"}
# Words that open a clause which needs a main clause after it ("after a dog barks, a cat meows").
SUBORDINATE_OPENERS = frozenset({"after", "as", "while", "before"})
# Verbs of the lexicon ending in "-ing" that are finite as written ("birds sing", "bells ring").
_BARE_ING = frozenset({"sing", "ring", "ping", "ding", "zing", "swing", "sting", "sling", "cling", "wring"})


def _participle_clause(words: list[str], opener: int) -> bool:
    """Whether the clause after ``words[opener]`` ("as", "while") gives its noun a participle where
    its verb belongs and has no verb ("as rain falling", "while a wind blowing"); "as birds sing
    beside running water" has both."""
    end = next((j for j in range(opener + 1, len(words)) if words[j] in _CLAUSE_STOPS), len(words))
    clause, lexicon = words[opener + 1 : end], _lexicon()
    kinds = [lexicon.word_class(word) for word in clause]
    if any(kind == "<verb>" or word in _BARE_ING or word in ("is", "are", "was", "were") or lexicon.is_finite_verb(word)
           for word, kind in zip(clause, kinds, strict=True)):
        return False
    return any(kind == "<ing>" and len(word) > 5 and kinds[k - 1] == "<noun>"
               for k, (word, kind) in enumerate(zip(clause, kinds, strict=True)) if k > 0)


# A verb's particles ("passes by", "rolls along"); one that ends its phrase is followed by a clause stop.
PARTICLES = frozenset({"by", "past", "along", "away", "overhead", "off", "out", "down", "up", "over", "around"})


def _particle_without_verb(words: list[str]) -> bool:
    """Whether a noun takes a particle that ends its phrase ("a train by", "a crowd along as") in a
    clause with no verb: the verb the particle belongs to was never written. "Over and over" and
    "along with" are no particles."""
    lexicon = _lexicon()
    ends = [*words[1:], "</s>"]
    for i, (word, after) in enumerate(zip(words, ends, strict=True)):
        if i == 0 or word not in PARTICLES or not (after in _CLAUSE_STOPS or after == "</s>"):
            continue
        if lexicon.word_class(words[i - 1]) != "<noun>" or words[i : i + 3] == ["over", "and", "over"]:
            continue
        if words[i : i + 2] == ["along", "with"]:
            continue
        start = i - 1
        while start > 0 and words[start - 1] not in CLAUSE_JOINS:
            start -= 1
        clause = words[start:i]
        if not any(lexicon.word_class(w) in ("<verb>", "<ing>") or lexicon.is_finite_verb(w) for w in clause):
            return True
    return False


# Nouns that end in "-ing" (a participle after one is no second participle: "a building collapsing").
ING_NOUNS = frozenset(
    {
        "something", "nothing", "anything", "everything", "building", "ceiling", "morning", "evening", "thing",
        "ring", "string", "wing", "spring", "swing", "king", "clothing", "railing",
    }
)


# Adjectives the corpus puts between an article and its noun: "a low note" and "a low hum" are two sounds.
ADJECTIVES = frozenset({"low", "high", "loud", "faint", "distant", "small", "large", "big", "little", "short", "long"})


def _doubled_verb(word: str, after: str) -> bool:
    """Two verbs in a row where one was meant: two participles ("roaring flowing"; not "a building
    collapsing") or a participle and the same verb again ("crackling crackles", "barking barks")."""
    if len(word) <= 4 or not word.endswith("ing") or word in ING_NOUNS:
        return False
    return (len(after) > 4 and after.endswith("ing")) or stem(after) == stem(word)


def _named(words: list[str], article: int) -> str:
    """The noun after the article at ``words[article]``, past any adjectives."""
    i = article + 1
    while i < len(words) - 1 and words[i] in ADJECTIVES:
        i += 1
    return words[i]


def is_redundant(caption: str) -> bool:
    """A caption that names one thing twice ("a snake hisses, followed by a snake hissing", "at
    first a woman says something while a woman says something"), has a clause that adds nothing
    ("with traffic roaring past with traffic past") or writes two verbs where one was meant ("a
    stream roaring flowing", "a fire crackling crackles"): whole phrases that still read as a
    decoder's stutter. Parallel decoding writes them where it merges two wordings of one sound;
    references do so rarely (two sounds of one kind: 0.5 % of the corpus's test captions), so
    ranking only prefers the others, and never removes a caption for it."""
    words = caption.replace(",", " , ").split()
    named = [_named(words, i) for i, word in enumerate(words[:-1]) if word in ARTICLES]
    if len(named) != len(set(named)) or any(_adds_nothing(_clauses(words))):
        return True
    return any(_doubled_verb(word, after) for word, after in zip(words, words[1:], strict=False))


def is_misfit(caption: str) -> bool:
    """A caption where a noun takes a verb that none of its sounds makes in the caption lexicon
    ("a siren applauds", "a telephone gobbles": one position took its word from another sound).
    None of the corpus's 25,000 test references is one; a fifth of the shipped DAC's best
    captions were, nearly always with a fitting candidate beside them, so ranking prefers those."""
    return _lexicon().misfit_words(caption) is not None


@functools.cache
def _lexicon() -> Lexicon:
    """The packaged lexicon, loaded once: ranking asks it about every candidate of every window."""
    return load_lexicon()


@functools.cache
def _caption_pairs() -> CaptionPairs:
    """The packaged word pairs, loaded once (as ``_lexicon``)."""
    return load_caption_pairs(lexicon=_lexicon())


@functools.cache
def _caption_triples() -> CaptionTriples:
    """The packaged word triples, loaded once (as ``_lexicon``)."""
    return load_caption_triples(lexicon=_lexicon())


# Event guidance (``event_bias``): measured on val scenes (docs/dac-recipe.md).
GUIDANCE_THRESHOLD = 0.15  # the head's clip probability above which a word is pushed up
GUIDANCE_CLIP = 3.0  # |log(p / threshold)| at most 3, so a decoder sure of a word can keep it
GUIDED_WORD_MAX_CLASSES = 8  # a word more classes use is grammar, not evidence

# Words a new clause or phrase starts with: where a caption may be cut back to a whole prefix.
CLAUSE_STARTS = frozenset({"and", "while", "as", "then", ",", "with", "followed", "before", "after", "in", "over"})


def drop_repeats(caption: str) -> str:
    """A redundant caption (``is_redundant``) without its repeats: the second of two verbs goes
    ("a stream roaring flowing" -> "a stream roaring", "a fire crackling crackles" -> "a fire
    crackling"), and so does the clause that names a sound a second time, from the clause word
    before it to the next one ("a snake hisses, followed by a snake hissing" -> "a snake hisses");
    the caption itself where the result is not whole."""
    words = caption.replace(",", " , ").split()
    words = [word for i, word in enumerate(words) if not (i and _doubled_verb(words[i - 1], word))]
    seen: set[str] = set()
    i = 0
    while i < len(words) - 1:
        if words[i] not in ARTICLES:
            i += 1
            continue
        noun = _named(words, i)
        if noun not in seen:
            seen.add(noun)
            i += 2
            continue
        # The clause that names it again: back to the clause word after the last other sound,
        # on to the next clause word or sound; left alone where that would cut another sound.
        floor = max((j for j in range(i) if words[j] in ARTICLES), default=-1) + 2
        start = i
        while start > floor and words[start] not in CLAUSE_STARTS:
            start -= 1
        while start > floor and words[start - 1] in CLAUSE_STARTS | {"by"}:  # ", followed by" as one
            start -= 1
        end = i + 2
        while end < len(words) and words[end] not in (CLAUSE_STARTS - {"in", "over"}) | ARTICLES:
            end += 1
        if words[start] not in CLAUSE_STARTS or (end < len(words) and words[end] in ARTICLES):
            i += 2
            continue
        words = words[:start] + words[end:]
        i = start
    words = _without_empty_clauses(words)
    out = " ".join(words).replace(" , ", ", ").replace(" ,", ",").strip(" ,")
    return out if out and not is_broken(out) else caption


def _clauses(words: list[str]) -> list[list[str]]:
    """Words split before each clause word ("with", "and", ",", ...), the first clause first."""
    clauses: list[list[str]] = [[]]
    for word in words:
        if word in CLAUSE_STARTS and clauses[-1] and clauses[-1][-1] not in CLAUSE_STARTS | {"by"}:
            clauses.append([])
        clauses[-1].append(word)
    return clauses


# Words of a setting rather than a sound: "in the background" adds no sound the second time either.
SETTING_WORDS = frozenset({"background", "distance", "something", "first", "moment", "quiet"})


def _content(words: list[str]) -> set[str]:
    return {word for word in words if word not in FUNCTION_WORDS and word not in SETTING_WORDS}


def _adds_nothing(clauses: list[list[str]]) -> list[bool]:
    """For each clause after the first: whether all its content words were said before it."""
    seen = _content(clauses[0])
    empty = [False]
    for clause in clauses[1:]:
        words = _content(clause)
        empty.append(bool(words) and words <= seen)
        seen |= words
    return empty


def _without_empty_clauses(words: list[str]) -> list[str]:
    """``words`` less every clause that names nothing new ("... with traffic roaring past with
    traffic past in the background" -> "... with traffic roaring past in the background")."""
    clauses = _clauses(words)
    return [word for clause, empty in zip(clauses, _adds_nothing(clauses), strict=True) if not empty for word in clause]


def _join(words: list[str]) -> str:
    """``caption_words``' inverse: "a dog barks , rain falls" -> "a dog barks, rain falls"."""
    return " ".join(words).replace(" , ", ", ")


def drop_run_ins(caption: str, most: int = 2) -> str:
    """The caption less at most ``most`` words where two wordings run into each other (``is_broken``'s
    word pairs), when that makes it whole: "a weapon hits a wooden shield cracks as a woman says
    something" -> "a weapon hits a wooden shield as a woman says something", so the sounds named after
    the slip stay; "" when no such deletion makes it whole (``whole_prefix`` then cuts)."""
    pairs = _caption_pairs()

    def mend(words: list[str], budget: int) -> list[str] | None:
        run_ins = [i for i in range(1, len(words)) if pairs.unheard_pair(words[i - 1], words[i])]
        if not run_ins:
            return words if words and not is_broken(" ".join(words)) else None
        if budget == 0:
            return None
        i = run_ins[0]  # the word after the slip first: the first wording is usually the one that fits
        padded = ["<s>", *words, "</s>"]  # words[i] is padded[i + 1]
        for drop in (i, i - 1):
            # The words that meet where one goes must be a pair the corpus writes as it stands (the
            # back-off to classes is for telling slips apart, too loose to write with).
            meet = (padded[drop], padded[drop + 2])
            if meet in pairs.heard and (mended := mend(words[:drop] + words[drop + 1 :], budget - 1)) is not None:
                return mended
        return None

    mended = mend(caption_words(caption), most)
    return _join(mended) if mended else ""


def whole_prefix(caption: str, fitting: bool = False) -> str:
    """The longest prefix of a caption that is whole (not ``is_broken``) and ends where the caption
    ends, a new clause begins or a second wording runs in ("rain patters on a windshield chainsaw
    overhead" -> "rain patters on a windshield"); the caption itself if it is whole; "" when no
    prefix is. ``fitting``: the prefix must not be ``is_misfit`` either."""
    words = caption_words(caption)
    pairs = _caption_pairs()
    run_ins = {  # cut before the second wording, where the first ends as the corpus's captions end
        i for i in range(1, len(words)) if pairs.unheard_pair(words[i - 1], words[i]) and pairs.ends(words[i - 1])
    }
    for end in range(len(words), 0, -1):
        if end < len(words) and words[end] not in CLAUSE_STARTS and end not in run_ins:
            continue
        prefix = _join(words[:end])
        if not is_broken(prefix) and not (fitting and is_misfit(prefix)):
            return prefix
    return ""


def _incomplete_clauses(words: list[str]) -> tuple[int, int]:
    """How many clauses name no sound's noun, and how many have no verb of the lexicon in any form
    ("a fire" in "a fire with rain falling" has no verb; "with flowing" no noun)."""
    lexicon = _lexicon()
    kinds = [{lexicon.word_class(word) for word in clause} for clause in _clauses(words)]
    return sum("<noun>" not in k for k in kinds), sum(not k & {"<verb>", "<ing>"} for k in kinds)


def mend_misfit(caption: str, most: int = 2) -> str:
    """A misfit caption (``is_misfit``) made whole and fitting: less at most ``most`` words where
    one sound's wording runs into another's ("a phone truck rings several times and a kettle
    whistles" -> "a phone rings several times and a kettle whistles"), else cut back to its
    longest whole, fitting prefix ("a clock rings and a woman rings the background" -> "a clock
    rings"); the caption itself when neither works. The parallel decoder's slip is one position
    that took its word from another sound, so the word where the caption first stops fitting, or
    the one before it, is the one to drop; but not a clause's only verb or noun ("a train roars"
    stays: "a train" says less and is no sentence), and a cut must keep a sound named."""
    words = caption_words(caption)
    before = _incomplete_clauses(words)

    def mend(words: list[str], budget: int) -> list[str] | None:
        text = _join(words)
        if not is_misfit(text):
            complete = all(a <= b for a, b in zip(_incomplete_clauses(words), before, strict=True))
            return words if words and complete and not is_broken(text) else None
        if budget == 0:
            return None
        slip = next(i for i in range(len(words)) if is_misfit(_join(words[: i + 1])))
        for drop in (slip, slip - 1):
            if drop >= 0 and (mended := mend(words[:drop] + words[drop + 1 :], budget - 1)) is not None:
                return mended
        return None

    mended = mend(words, most)
    if mended:
        return _join(mended)
    prefix = whole_prefix(caption, fitting=True)
    return prefix if prefix and _lexicon().labels_in_caption(prefix) else caption


def _ngram_f1(a: list[str], b: list[str]) -> float:
    """F1 overlap of unigrams and bigrams: rewards the same words in the same order."""
    if not a or not b:
        return float(a == b)
    grams_a = Counter(a) + Counter(zip(a, a[1:], strict=False))
    grams_b = Counter(b) + Counter(zip(b, b[1:], strict=False))
    overlap = sum((grams_a & grams_b).values())
    return 2 * overlap / (sum(grams_a.values()) + sum(grams_b.values()))


def event_agreement(caption: str, clip_probabilities: Sequence[float], classes: Sequence[str]) -> float:
    """Expected F1 of the event classes a caption names, if each class of ``classes`` sounds with
    its clip probability from the event head: 2 * sum(p of the named) / (named + sum(p)), the usual
    approximation of the expectation. A class the head does not know counts as named with p = 0.

    The head names the events of a scene better than the decoders' best captions do (the recipe
    log: val event-F1 0.28 at its best threshold against the DAC's 0.17), while the K candidates
    often hold one that names them; this picks it without a threshold.
    """
    named = _lexicon().labels_in_caption(caption)
    index = _class_index(tuple(classes))
    hit = sum(clip_probabilities[index[name]] for name in named if name in index)
    total = len(named) + sum(clip_probabilities)
    return 2 * hit / total if total else 0.0


def event_word_tokens(
    tokenizer: Any, classes: Sequence[str], vocab_size: int, lexicon: Lexicon | None = None
) -> torch.Tensor:
    """(classes, vocab) 0/1: the tokens that are whole words of a class's wording in the lexicon
    (its nouns, verbs, participles and synonyms: "dog", "barks", "barking"), what event guidance
    moves. Function words ("the", "with"), words under three letters, words split into pieces and words
    shared by more than ``GUIDED_WORD_MAX_CLASSES`` classes ("plays", "something": grammar, not
    evidence) are left out."""
    lexicon = lexicon or _lexicon()
    owners: list[set[int]] = [set() for _ in range(vocab_size)]
    for index, name in enumerate(classes):
        if name not in lexicon.entries:
            continue
        words: set[str] = set()
        for entry in [lexicon.entries[name], *(e for e in lexicon.label_entries.values() if e.label == name)]:
            for phrase in (*map(strip_article, entry.noun), *entry.verb, *entry.ing, *entry.also):
                words.update(phrase.split())
        for word in words - STOPWORDS - FUNCTION_WORDS:
            ids = tokenizer.encode(word)
            if len(word) >= 3 and len(ids) == 1:
                owners[ids[0]].add(index)
    matrix = torch.zeros(len(classes), vocab_size)
    for token, owned in enumerate(owners):
        if len(owned) <= GUIDED_WORD_MAX_CLASSES:
            matrix[sorted(owned), token] = 1.0
    return matrix


def event_bias(clip_probabilities: torch.Tensor, word_tokens: torch.Tensor, guidance: float) -> torch.Tensor:
    """(windows, classes) clip probabilities -> (windows, vocab) logit offsets: each event word gets
    ``guidance * log(p / GUIDANCE_THRESHOLD)`` with p the most probable of its classes, clipped to
    +-``GUIDANCE_CLIP``; other tokens get 0. So a word of a sound the head hears (p above the
    threshold) is pushed up and one of a sound it does not hear is pushed down, before the
    decoder's own choice; grammar words are left to the decoder."""
    p = (clip_probabilities.float()[:, :, None] * word_tokens[None]).amax(dim=1).clamp_min(1e-4)
    offsets = guidance * torch.log(p / GUIDANCE_THRESHOLD).clamp(-GUIDANCE_CLIP, GUIDANCE_CLIP)
    return torch.where(word_tokens.sum(0) > 0, offsets, torch.zeros_like(offsets))


@functools.lru_cache(maxsize=8)
def _packaged_word_tokens(tokenizer: Any, classes: tuple[str, ...], vocab_size: int) -> torch.Tensor:
    """``event_word_tokens`` with the packaged lexicon, once per model: the engines build a
    ``DecodingTask`` for every window, and the table takes ~17 ms to build."""
    return event_word_tokens(tokenizer, classes, vocab_size)


@functools.cache
def _class_index(classes: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(classes)}


def minimum_bayes_risk_order(captions: list[str]) -> list[int]:
    """Indices of captions sorted by mean agreement (uni+bigram F1) with the other candidates."""
    words = [caption.split() for caption in captions]
    if len(words) < 3:
        return list(range(len(words)))
    agreement = [
        sum(_ngram_f1(w, other) for j, other in enumerate(words) if j != i) / (len(words) - 1)
        for i, w in enumerate(words)
    ]
    return sorted(range(len(words)), key=lambda i: -agreement[i])


# --- the decoding task -----------------------------------------------------------------------------


class Runner(Protocol):
    """A backend's two graph calls. ``context`` returns whatever ``step`` reads the audio from
    (repeated per candidate row) and the event head's clip probabilities, (windows, classes) on
    the CPU, or None for a model without the head."""

    def context(self, windows: torch.Tensor, candidates: int) -> tuple[Any, torch.Tensor | None]: ...

    def step(
        self, noisy: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor, code: torch.Tensor, context: Any
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class ChunkCache:
    """A streaming encoder's chunk features, kept by the chunk's samples (a digest of them).

    A sliding window whose hop is a multiple of the chunk holds the chunks of the previous window
    shifted by one, so only its newest chunk is encoded; it needs no notion of streams or positions,
    and the same chunk gets the same features whatever window, batch or caller it comes in.
    ``encode``: (chunks, chunk samples) -> (chunks, chunk frames, width), in one batched call.
    """

    def __init__(self, chunk_samples: int, encode: Callable[[torch.Tensor], torch.Tensor], capacity: int = 128):
        self.chunk_samples = chunk_samples
        self.encode = encode
        self.capacity = capacity
        self.kept: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.encoded = self.reused = 0  # chunks, since the start (what streaming saved)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(batch, samples) windows -> (batch, chunks x chunk frames, width): each window's chunks, joined."""
        batch = windows.shape[0]
        chunks = windows.reshape(-1, self.chunk_samples)
        names = [hashlib.blake2b(np.ascontiguousarray(c.numpy(), dtype=np.float32), digest_size=16).digest()
                 for c in chunks.detach().cpu()]
        new = list(dict.fromkeys(name for name in names if name not in self.kept))
        if new:
            first = {name: index for index, name in reversed(list(enumerate(names)))}
            encoded = self.encode(chunks[[first[name] for name in new]])
            for name, features in zip(new, encoded, strict=True):
                self.kept[name] = features
        self.encoded += len(new)
        self.reused += len(names) - len(new)
        joined = torch.stack([self.kept[name] for name in names])
        for name in names:
            self.kept.move_to_end(name)
        while len(self.kept) > max(self.capacity, len(names)):
            self.kept.popitem(last=False)
        return joined.unflatten(0, (batch, -1)).flatten(1, 2)


def take_rows(context: Any, rows: list[int]) -> Any:
    """The rows ``rows`` of a runner's context (tensors or arrays, nested in tuples and lists, rows
    first): a sub-batch decodes from it as it would have in the whole batch."""
    if isinstance(context, (list, tuple)):
        return type(context)(take_rows(part, rows) for part in context)
    if isinstance(context, torch.Tensor):
        return context[torch.tensor(rows, dtype=torch.long, device=context.device)]
    return context[np.asarray(rows, dtype=np.int64)]


def forget_audio(runner: Any) -> None:
    """Empty a runner's chunk caches (a streaming encoder's chunks, YAMNet's seconds), so that the
    next call costs what a clip never heard before costs: what speed figures of independent clips
    must time (a sliding window's reuse is the daemon's to measure)."""
    for value in vars(runner).values():
        if isinstance(value, ChunkCache):
            value.kept.clear()


class EagerRunner:
    """The model's own modules: the reference every compiled backend must match."""

    def __init__(self, model: Captioner):
        self.model = model
        self.decoder = model.decoder
        chunk = model.dims.encoder_chunk_samples
        encoder, frontend = model.encoder, model.frontend
        self.chunks = ChunkCache(chunk, lambda audio: encoder.encode_chunk(frontend(audio))) if chunk else None
        # YAMNet hears each second once: a window sliding by whole seconds reuses the rest.
        self.heard = ChunkCache(HEARING_CHUNK_SAMPLES, model.hearing) if model.hearing is not None else None

    def context(self, windows: torch.Tensor, candidates: int) -> tuple[Any, torch.Tensor | None]:
        if self.chunks is not None:
            features = self.model.encoder.mix(self.chunks.features(windows))
        else:
            features = self.model.encode_audio(windows)
        heard = self.heard.features(windows) if self.heard is not None else None
        frames = events = None
        if self.model.events is not None:
            frames, events = self.model.detect_events(features, windows, heard)
            events = events.cpu()
        if not isinstance(self.decoder, DiffusionDecoder):
            return features, events  # the AR decoder reads the encoder features (one row per window)
        memory = frames.to(features.dtype) if frames is not None else None  # read by an event-memory denoiser
        return self.decoder.candidate_kv(self.decoder.prepare_audio(features, memory), candidates), events

    def step(self, noisy, t, self_cond, code, context):
        return self.decoder.step(noisy, t, self_cond, code, context)


def window_seed(seed: int, window: torch.Tensor) -> int:
    """A 63-bit seed from the decoding seed and a window's float32 samples: the window's starting
    noise depends on what it holds, never on its row in a batch or its place in a stream."""
    digest = hashlib.blake2b(np.ascontiguousarray(window.detach().cpu().numpy(), dtype=np.float32), digest_size=8)
    digest.update(int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(digest.digest(), "little") >> 1


class DecodingTask:
    """Waveforms -> ranked candidate captions for one model, one set of options and one backend.

    ``max_rows`` / ``max_windows``: most denoiser rows (windows x candidates) and windows a backend
    takes per call (engines built for a fixed batch range); larger batches are split.
    """

    def __init__(
        self,
        model: Captioner,
        options: DecodingOptions,
        runner: Runner | None = None,
        max_rows: int | None = None,
        max_windows: int | None = None,
    ):
        self.model = model
        self.options = options
        self.runner = runner or EagerRunner(model)
        self.is_dac = isinstance(model.decoder, DiffusionDecoder)
        self.rows_per_window = options.candidates if self.is_dac else 1
        if max_rows is not None and max_rows < self.rows_per_window:
            raise ValueError(f"{options.candidates} candidates per window exceed the backend's {max_rows} rows a call")
        limits = [n for n in (max_windows, max_rows // self.rows_per_window if max_rows else None) if n]
        self.windows_per_call = min(limits) if limits else None
        guided = options.event_guidance > 0 and model.events is not None
        dims = model.dims
        self.word_tokens = (
            _packaged_word_tokens(model.tokenizer, tuple(dims.event_classes), dims.vocab_size) if guided else None
        )

    @torch.inference_mode()
    def run(self, audio: torch.Tensor | np.ndarray) -> list[list[Candidate]]:
        """Captions for (batch, samples) or (samples,) waveforms: per window, candidates best first."""
        windows = torch.as_tensor(audio, dtype=torch.float32)
        windows = self.model.fit_length(windows[None] if windows.ndim == 1 else windows.cpu())
        step = self.windows_per_call or max(len(windows), 1)
        results: list[list[Candidate]] = []
        for first in range(0, len(windows), step):
            chunk = windows[first : first + step]
            context, events = self.context(chunk)
            noise, bias = self.noise(chunk), self.bias(events)
            ranked = self.rank(*self.sample(context, noise, bias), events)
            fallback = bias is not None and self.options.repair
            bad = [i for i, window in enumerate(ranked) if fallback and any(caption_form(window[0].caption))]
            if bad:
                # The guidance can push the decoder to words it cannot join into a sentence; where a
                # window's best candidate is not whole, the unguided decoder's best (the same
                # noise, ranked the same way) takes its place if it is better formed. Only those
                # windows decode again: in a batch, the others would pay for nothing.
                rows = [w * self.rows_per_window + r for w in bad for r in range(self.rows_per_window)]
                again = noise[rows] if noise is not None else None
                heard = events[bad] if events is not None else None
                plain = self.rank(*self.sample(take_rows(context, rows), again), heard)
                for w, new in zip(bad, plain, strict=True):
                    if caption_form(new[0].caption) < caption_form(ranked[w][0].caption):
                        ranked[w] = new
            results += ranked
        return results

    def noise(self, windows: torch.Tensor) -> torch.Tensor | None:
        """DAC's starting noise, (windows x candidates, length, emb), drawn on the CPU; None for AR."""
        if not self.is_dac:
            return None
        dims, k = self.model.dims, self.options.candidates
        shape = (k, dims.max_caption_tokens, dims.embedding_dim)
        if self.options.seed is None:
            noise = torch.randn((len(windows) * k, *shape[1:]))
        else:
            generators = [torch.Generator().manual_seed(window_seed(self.options.seed, w)) for w in windows]
            noise = torch.cat([torch.randn(shape, generator=g) for g in generators]) if generators else torch.empty(0)
        return noise * self.options.noise_scale

    def context(self, windows: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        """The backend's audio side for these windows, once per window: what the step reads
        (repeated per candidate row) and the event head's clip probabilities (None without one)."""
        return self.runner.context(windows.to(self.model.device), self.rows_per_window)

    def bias(self, events: torch.Tensor | None) -> torch.Tensor | None:
        """Each window's logit offsets from its clip event probabilities (``event_bias``), or None."""
        if self.word_tokens is None or events is None:
            return None
        return event_bias(events, self.word_tokens, self.options.event_guidance).to(self.model.device)

    def sample(
        self, context: Any, noise: torch.Tensor | None, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and their log-probabilities, (rows, length): the decoder alone (what speed
        measures). ``bias``: (windows, vocab) logit offsets, added at every step."""
        decoder = self.model.decoder
        if not isinstance(decoder, DiffusionDecoder):
            beams = max(self.options.beam_size, self.options.candidates)
            tokens, log_probs = decoder.beam_search(context, beams, bias)  # a beam of 1 is greedy
            return tokens.flatten(0, -2), log_probs.flatten(0, -2)
        assert noise is not None
        rows = noise.shape[0]
        device = self.model.device
        row_bias = bias.repeat_interleave(self.options.candidates, dim=0)[:, None, :] if bias is not None else None
        x = noise.to(device)
        codes = decoder.candidate_codes(rows // self.options.candidates, self.options.candidates).to(device)
        self_cond = torch.zeros_like(x)
        times = torch.linspace(1.0, 0.0, self.options.steps + 1, device=device)
        logits = x0 = None
        for i in range(self.options.steps):
            t, t_next = times[i].expand(rows), times[i + 1].expand(rows)
            logits, x0 = self.runner.step(x, t, self_cond, codes, context)
            if row_bias is not None:  # the x0 estimate follows the steered logits (score interpolation)
                logits = logits + row_bias.to(logits.dtype)
                x0 = decoder.expected_embedding(logits.to(decoder.token_embedding.weight.dtype)).to(x0.dtype)
            self_cond = x0
            if i + 1 < self.options.steps:
                x = decoder.ddim_step(x, x0, t, t_next)
        assert logits is not None
        token_log_probs, tokens = torch.log_softmax(logits.float(), dim=-1).max(dim=-1)
        return tokens, token_log_probs

    def rank(
        self, tokens: torch.Tensor, log_probs: torch.Tensor, events: torch.Tensor | None = None
    ) -> list[list[Candidate]]:
        """(windows x rows, length) decoder output, and each window's clip event probabilities ->
        per window, its candidates best first."""
        per_window = self.options.candidates if self.is_dac else max(self.options.beam_size, self.options.candidates)
        tokens = tokens.view(-1, per_window, tokens.shape[-1]).cpu()
        log_probs = log_probs.float().view(-1, per_window, log_probs.shape[-1]).cpu()
        heard = events.tolist() if events is not None else [None] * len(tokens)
        return [
            rank_candidates(self.model, rows.tolist(), scores.tolist(), self.options, clip)
            for rows, scores, clip in zip(tokens, log_probs, heard, strict=True)
        ]


def caption_form(caption: str) -> tuple[bool, bool, bool]:
    """How a caption is formed, as ranking orders captions: whole (all False) first, then redundant,
    misfit (another sound's verb) and broken ones."""
    return is_broken(caption), is_misfit(caption), is_redundant(caption)


def decode(
    model: Captioner,
    audio: torch.Tensor | np.ndarray,
    options: DecodingOptions | None = None,
    runner: Runner | None = None,
    max_rows: int | None = None,
) -> list[list[Candidate]]:
    """Captions of (batch, samples) waveforms at the model's rate: per window, candidates best first."""
    return DecodingTask(model, options or DecodingOptions(), runner, max_rows).run(audio)


def rank_candidates(
    model: Captioner,
    rows: Sequence[Sequence[int]],
    log_probs: Sequence[Sequence[float]],
    options: DecodingOptions,
    clip_probabilities: Sequence[float] | None = None,
) -> list[Candidate]:
    """One window's candidate token rows -> captions, best first (pluggable by ``options.rank``);
    ``clip_probabilities``: the event head's, over ``model.dims.event_classes``."""
    candidates = []
    for ids, row_log_probs in zip(rows, log_probs, strict=True):
        kept = cut_and_collapse(list(ids), model.eos_id, model.pad_id)
        # Score over the tokens that were written plus the [EOS] that ended them.
        used = list(row_log_probs)[: min(len(ids), _end_index(ids, model.eos_id, model.pad_id) + 1)]
        score = float(np.mean(used)) if used else float("-inf")
        caption = collapse_repeated_words(decode_tokens(model.tokenizer, kept))
        if options.repair and is_broken(caption):  # cutting a run-in can leave a word twice ("beeping by by")
            caption = collapse_repeated_words(drop_run_ins(caption) or whole_prefix(caption) or caption)
        if options.repair and is_redundant(caption):
            caption = drop_repeats(caption)
        candidates.append(Candidate(caption, score))
    candidates.sort(key=lambda c: -c.score)
    rank = options.rank if options.rank != "auto" else ("mbr" if model.dims.kind == "dac" else "score")
    if rank == "mbr":
        order = minimum_bayes_risk_order([c.caption for c in candidates])
        candidates = [candidates[i] for i in order]
    if options.match_events and clip_probabilities is not None:  # a stable sort: ties keep the order above
        classes = model.dims.event_classes
        candidates.sort(key=lambda c: -event_agreement(c.caption, clip_probabilities, classes))
    if options.prefer_whole:  # a stable sort: whole, redundant, misfit, broken; the order above within each
        candidates.sort(key=lambda c: caption_form(c.caption))
    if options.repair:  # after the ranking, so a mended misfit never displaces a caption that fitted as written
        candidates = [Candidate(mend_misfit(c.caption), c.score) if is_misfit(c.caption) else c for c in candidates]
    return candidates[: options.candidates]


def _end_index(ids: Sequence[int], eos_id: int, pad_id: int) -> int:
    for index, token in enumerate(ids):
        if token in (eos_id, pad_id):
            return index
    return len(ids) - 1
