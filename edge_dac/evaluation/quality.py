"""Reference-based caption quality: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D, as in the COCO caption tools.

The scorers are pycocoevalcap's, the same code behind published AudioCaps/Clotho numbers, with two
parts replaced:

- Tokenizer. pycocoevalcap's ``PTBTokenizer`` runs Stanford CoreNLP in Java and writes a temporary
  file *inside the installed package*, which fails on a read-only install. ``tokenize_caption`` does
  the same job in Python: lower-case, split clitics (``man's`` -> ``man 's``, ``can't`` -> ``ca n't``),
  keep hyphenated words, numbers and abbreviations whole, drop the punctuation that the COCO tools
  drop. One deliberate difference: brackets are dropped, where CoreNLP emits ``-lrb-`` tokens that
  the COCO tools then score as words. ``tests/test_metrics.py`` checks it against the Java tokenizer.
- METEOR process. pycocoevalcap's ``Meteor`` only stops its Java process in ``__del__``, reads no
  stderr and never notices a dead process; ``Meteor`` here is a context manager that always closes it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from edge_dac.errors import EdgeDacError

_CONTRACTION = re.compile(r"(\w)(n't|'s|'re|'ve|'d|'ll|'m)\b")
_TOKEN = re.compile(
    r"\d+(?:[.,:]\d+)+"  # 1,000  3.5  10:30
    r"|(?:[^\W\d_]\.){2,}"  # e.g.  u.s.
    r"|n't|'(?:s|re|ve|d|ll|m)\b"  # clitics split off above
    r"|\w+(?:[-/]\w+)*"  # dog  high-pitched  flows/drips  mp3
    r"|[^\w\s.,!?;:'\"`()\[\]{}\-]"  # other symbols (&, %, +) are words to the COCO tools too
)


def tokenize_caption(caption: str) -> list[str]:
    """Lower-cased PTB-style word tokens of a caption, without punctuation."""
    text = caption.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\bcannot\b", "can not", text)
    text = _CONTRACTION.sub(r"\1 \2", text)
    return _TOKEN.findall(text)


def normalize_for_scoring(caption: str) -> str:
    """The caption as the space-joined tokens the COCO scorers expect."""
    return " ".join(tokenize_caption(caption))


def _meteor_jar() -> Path:
    from pycocoevalcap.meteor import meteor  # the folder has no __init__.py; its module has a __file__

    jar = Path(meteor.__file__).parent / "meteor-1.5.jar"
    if not jar.is_file():
        raise EdgeDacError(
            f"METEOR's jar is missing from pycocoevalcap ({jar}): pip install --force-reinstall pycocoevalcap"
        )
    return jar


class Meteor:
    """METEOR 1.5 (Denkowski & Lavie 2014) through its Java jar, talking over stdin/stdout.

    Use as a context manager, or call ``close()``: the Java process is stopped either way.
    """

    def __init__(self, java: str = "java", max_heap: str = "2G"):
        java_path = shutil.which(java)
        if java_path is None:
            raise EdgeDacError(
                f"METEOR needs Java but '{java}' is not on PATH: install default-jre-headless "
                "(scripts/setup.sh does) or turn METEOR off"
            )
        jar = _meteor_jar()
        # stderr goes to a file: a pipe nobody reads could fill up and stall Java, and the file
        # still tells what went wrong if the process dies.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(
            [java_path, f"-Xmx{max_heap}", "-jar", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=jar.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def __enter__(self) -> Meteor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the Java process and reap it: end of input first, a kill if it lingers. Idempotent."""
        process = self._process
        with contextlib.suppress(OSError):  # OSError: it had died already
            process.stdin.close()  # METEOR exits by itself at the end of its input
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        self._stderr.close()

    def __del__(self) -> None:
        # Safety net for a caller that forgot close(); the context manager is the way to use it.
        if getattr(self, "_process", None) is not None and self._process.returncode is None:
            self.close()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _send(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError):  # _receive reports it, with Java's own last words
            self._process.stdin.write(line.encode() + b"\n")
            self._process.stdin.flush()

    def _receive(self) -> str:
        answer = self._process.stdout.readline()
        if not answer:
            self._stderr.seek(0)
            last_words = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            raise EdgeDacError(
                f"METEOR's Java process stopped answering ({' / '.join(last_words) or 'no message'}): "
                "check that Java runs and has memory, or turn METEOR off"
            )
        return answer.decode().strip()

    def score(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]], progress: bool = False
    ) -> tuple[float, list[float]]:
        """Corpus METEOR (from pooled statistics, as the COCO tools report it) and per-caption scores.

        Captions should already be normalised; ``|||`` (the protocol's separator) is removed.
        """
        # One question at a time: writing every line first could fill both pipes and deadlock.
        stats = []
        pairs = list(zip(hypotheses, references, strict=True))
        for hypothesis, refs in tqdm(pairs, desc="METEOR", disable=not progress):
            self._send(" ||| ".join(["SCORE", *(_clean(ref) for ref in refs), _clean(hypothesis)]))
            stats.append(self._receive())
        # One EVAL line with every caption's statistics answers one score per caption, then the total.
        self._send(" ||| ".join(["EVAL", *stats]))
        per_caption = [float(self._receive()) for _ in stats]
        return float(self._receive()), per_caption


def _clean(caption: str) -> str:
    return " ".join(caption.replace("|||", " ").split())


def coco_metrics(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    meteor: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of one hypothesis per clip against its references.

    All corpus-level: BLEU and METEOR from pooled statistics, ROUGE-L and CIDEr-D as means over
    clips. CIDEr-D weighs n-grams by their document frequency over the references of *this* set,
    so it needs a realistic number of clips (with a single clip every weight, and the score, is 0).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [normalize_for_scoring(h)] for i, h in enumerate(hypotheses)}
    gts = {i: [normalize_for_scoring(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    scores = {f"bleu_{n}": float(bleu[n - 1]) for n in range(1, 5)}
    scores["rouge_l"] = float(rouge)
    scores["cider_d"] = float(cider)
    if meteor:
        with Meteor() as scorer:
            scores["meteor"], _ = scorer.score([res[i][0] for i in res], [gts[i] for i in gts], progress=progress)
    return scores
