"""Caption metrics on toy sets whose values are worked out by hand here.

Everything runs for real: pycocoevalcap's scorers, METEOR's Java jar, the packaged MiniLM model.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_dac.errors import EdgeDacError
from edge_dac.evaluation import (
    Meteor,
    SentenceEmbedder,
    coco_metrics,
    diversity_metrics,
    evaluate_captions,
    event_f1,
    sbert_similarity,
    tokenize_caption,
)
from edge_dac.evaluation.diversity import distinct_n, mtld, self_bleu, sentence_bleu

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


# --- tokenizer --------------------------------------------------------------------------------


def test_tokenizer_matches_stanford_ptb_tokenizer_of_the_coco_tools():
    """Our Python tokenizer against the Java PTBTokenizer that pycocoevalcap ships (brackets aside)."""
    sentences = [
        "A dog barks, then a man's voice speaks.",
        "A high-pitched whistle -- followed by silence!",
        'Someone can\'t stop laughing and "talking".',
        "Rain falls on a tin roof; thunder rumbles...",
        "A machine whirs at 1,000 rpm and 3.5 kHz e.g. a drill",
        "People talk & laugh: a child's toy squeaks?",
        "Water flows/drips into a bucket",
        "Don't you cannot won't I'm they're we've he'd you'll",
        "A 'quoted' word and cats' meows - then an engine revs",
        "  UPPER   case\ttext  ",
    ]
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
    java = subprocess.run(
        ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"],
        input="\n".join(sentences),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    expected = [
        [word for word in line.split() if word not in ptbtokenizer.PUNCTUATIONS] for line in java.stdout.splitlines()
    ]
    assert [tokenize_caption(s) for s in sentences] == expected


# --- BLEU, ROUGE-L, CIDEr-D, METEOR -----------------------------------------------------------


def test_bleu_1_by_hand():
    hypotheses = ["A dog barks.", "Rain falls on the roof"]
    references = [
        ["a dog barks loudly", "the dog is barking"],
        ["rain falls", "heavy rain falls on a tin roof"],
    ]
    # clip 1: a, dog, barks all in a reference -> 3 of 3 words; closest reference length 4
    # clip 2: rain, falls, on, roof match, "the" in no reference -> 4 of 5; closest length 7 (|7-5| < |2-5|)
    precision = (3 + 4) / (3 + 5)
    brevity_penalty = math.exp(1 - (4 + 7) / (3 + 5))
    scores = coco_metrics(hypotheses, references, meteor=False)
    assert scores["bleu_1"] == pytest.approx(precision * brevity_penalty, rel=1e-6)


def test_rouge_l_by_hand_on_one_pair():
    # LCS of the two is "dog barks at": 3 words; precision 3/6, recall 3/4, beta 1.2 as in the COCO tools
    precision, recall, beta = 3 / 6, 3 / 4, 1.2
    expected = (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
    scores = coco_metrics(["a dog barks at the cat"], [["dog barks at night"]], meteor=False)
    assert scores["rouge_l"] == pytest.approx(expected)


def test_identical_captions_score_perfectly(embedder):
    captions = ["a dog barks at night", "heavy rain falls on a tin roof", "a car engine idles"]
    references = [[c] * 5 for c in captions]
    scores = coco_metrics(captions, references, meteor=False)
    for n in range(1, 5):
        assert scores[f"bleu_{n}"] == pytest.approx(1.0)
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert scores["cider_d"] == pytest.approx(10.0)  # CIDEr-D's cosine of 1, times its factor of 10
    similarity = sbert_similarity(captions, references, embedder=embedder)
    assert similarity["sbert_max"] == pytest.approx(1.0, abs=1e-5)
    assert similarity["sbert_mean"] == pytest.approx(1.0, abs=1e-5)


def test_a_wrong_caption_scores_below_a_right_one():
    references = [["a dog barks loudly", "a dog is barking"], ["rain falls on a roof", "it is raining"]]
    right = coco_metrics(["a dog barks", "rain falls"], references, meteor=False)
    wrong = coco_metrics(["rain falls", "a dog barks"], references, meteor=False)
    for key in ("bleu_1", "rouge_l", "cider_d"):
        assert right[key] > wrong[key]


def test_meteor_scores_and_always_stops_its_java_process():
    with pytest.raises(ValueError, match="after scoring"), Meteor() as meteor:
        pid = meteor.pid
        assert Path(f"/proc/{pid}").exists()
        total, per_caption = meteor.score(
            ["a dog barks", "", "a cat meows"],
            [["a dog barks"], ["a dog barks"], ["rain falls heavily"]],
        )
        raise ValueError("the caller fails after scoring")
    assert per_caption[0] == pytest.approx(1.0, abs=1e-3)
    assert per_caption[1] == 0.0 and per_caption[2] == 0.0  # empty or no word in common
    assert 0.0 < total < 1.0
    assert meteor._process.returncode is not None  # waited for, so no zombie is left
    assert not Path(f"/proc/{pid}").exists()


def test_meteor_reports_a_dead_java_process_in_one_line():
    with pytest.raises(EdgeDacError, match="stopped answering"), Meteor() as meteor:
        meteor._process.kill()  # what the kernel's OOM killer would do
        meteor.score(["a dog barks"], [["a dog barks"]])
    assert meteor._process.returncode is not None


# --- SBERT ------------------------------------------------------------------------------------


def test_embeddings_are_unit_vectors_that_do_not_depend_on_batching(embedder):
    sentences = ["a dog barks", "a dog is barking loudly in the yard", "rain on a roof", ""]
    vectors = embedder.encode(sentences)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    one_by_one = SentenceEmbedder(batch_size=1)
    one_by_one._tokenizer, one_by_one._model = embedder._tokenizer, embedder._model
    assert np.abs(one_by_one.encode(sentences) - vectors).max() < 1e-5
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_sentence_embedder_loads_offline_and_matches_sentence_transformers():
    # 0.78989667 is this pair's cosine from sentence_transformers.SentenceTransformer on the same
    # packaged model, the reference pipeline our mean pooling replaces.
    script = (
        "from edge_dac.evaluation import SentenceEmbedder\n"
        "v = SentenceEmbedder().encode(['A dog barks loudly.', 'a dog is barking'])\n"
        "print(float(v[0] @ v[1]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/nonexistent"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.split()[-1]) == pytest.approx(0.78989667, abs=1e-4)


# --- event-F1 ---------------------------------------------------------------------------------


def test_event_f1_on_known_label_sets():
    predicted = [{"dog", "car"}, {"rain"}, set()]
    true = [{"dog"}, {"rain", "thunder"}, {"bird"}]
    scores = event_f1(predicted, true)
    # pooled: hits dog, rain; false alarm car; misses thunder, bird
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(4 / 7)
    # per label: dog and rain perfect; car, thunder, bird all 0 -> 2 of 5 labels
    assert scores["macro_precision"] == pytest.approx(2 / 5)
    assert scores["macro_recall"] == pytest.approx(2 / 5)
    assert scores["macro_f1"] == pytest.approx(2 / 5)
    assert scores["n_labels"] == 5


def test_event_f1_edge_cases():
    assert event_f1([{"dog"}], [{"dog"}])["f1"] == 1.0
    assert event_f1([set()], [set()]) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "macro_precision": 0.0,
        "macro_recall": 0.0,
        "macro_f1": 0.0,
        "n_labels": 0,
    }
    with pytest.raises(EdgeDacError, match="one set per clip"):
        event_f1([{"dog"}], [{"dog"}, {"cat"}])


# --- diversity --------------------------------------------------------------------------------


def test_distinct_n_by_hand():
    candidates = [tokenize_caption(c) for c in ["A dog barks", "a dog growls", "a cat meows"]]
    # unigrams: a, dog, barks, a, dog, growls, a, cat, meows -> 6 unique of 9
    assert distinct_n(candidates, 1) == pytest.approx(6 / 9)
    # bigrams: a-dog, dog-barks, a-dog, dog-growls, a-cat, cat-meows -> 5 unique of 6
    assert distinct_n(candidates, 2) == pytest.approx(5 / 6)
    assert distinct_n([["one"]], 2) == 0.0  # no bigram at all


DIVERSE = [
    "a dog barks in the yard",
    "a car engine starts and idles",
    "heavy rain falls on a tin roof",
    "birds chirp in the morning trees",
    "a woman laughs while people talk",
]
REPETITIVE = [
    "a dog barks in the yard",
    "a dog barks in the yard",
    "a dog barks in a yard",
    "the dog barks in the yard",
    "a dog barks in the yard",
]


def test_diverse_candidates_rank_above_repetitive_ones():
    diverse, repetitive = diversity_metrics([DIVERSE]), diversity_metrics([REPETITIVE])
    assert diverse["distinct_1"] > repetitive["distinct_1"]
    assert diverse["distinct_2"] > repetitive["distinct_2"]
    assert diverse["mtld"] > repetitive["mtld"]
    assert diverse["self_bleu"] < repetitive["self_bleu"]
    assert diverse["vocab_size_all_candidates"] > repetitive["vocab_size_all_candidates"]


def test_self_bleu_and_mtld_limits():
    same = [["a", "dog", "barks", "in", "the", "yard"]] * 3
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(same[:1]) is None  # one candidate has nothing to be compared with
    assert sentence_bleu(["a", "dog"], [["rain", "falls"]]) == 0.0
    assert mtld(["a", "dog", "barks"]) is None  # too short for a meaningful MTLD


def test_corpus_diversity_uses_the_best_caption_of_each_clip():
    # Every clip's best caption is the same sentence: the set-level numbers must show it.
    same_best = diversity_metrics([["a dog barks", "x y"], ["a dog barks", "p q"]])
    assert same_best["corpus_distinct_1"] == pytest.approx(3 / 6)
    assert same_best["vocab_size"] == 3
    assert same_best["vocab_size_all_candidates"] == 7


# --- evaluate_captions ------------------------------------------------------------------------


def keyword_labels(caption: str) -> set[str]:
    """A tiny real caption->labels mapping, standing in for the lexicon in these tests."""
    words = set(tokenize_caption(caption))
    return {label for label in ("dog", "rain", "car", "bird") if label in words or label + "s" in words}


def test_evaluate_captions_returns_every_metric_as_json(embedder):
    predictions = [DIVERSE, REPETITIVE[::-1], ["a car passes by"]]
    references = [
        ["a dog barks in a yard", "a dog is barking", "dog barking", "a dog barks twice", "barking"],
        ["a dog barks outside", "the dog barks", "a dog barking in a yard", "dog", "a dog barks loudly"],
        ["a car drives past", "cars pass by", "traffic", "a car passes", "an engine and a car"],
    ]
    true_labels = [{"dog"}, {"dog", "bird"}, {"car"}]
    results = evaluate_captions(predictions, references, true_labels, keyword_labels, embedder=embedder)
    json.dumps(results, allow_nan=False)
    expected_keys = {
        "n_clips", "candidates_per_clip",
        "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d",
        "sbert_max", "sbert_mean",
        "event_precision", "event_recall", "event_f1",
        "event_macro_precision", "event_macro_recall", "event_macro_f1", "event_n_labels",
        "distinct_1", "distinct_2", "mtld", "self_bleu",
        "corpus_distinct_1", "corpus_distinct_2", "corpus_mtld", "vocab_size", "vocab_size_all_candidates",
        "broken", "broken_all_candidates", "redundant", "misfit",
    }  # fmt: skip
    assert set(results) == expected_keys
    assert results["n_clips"] == 3 and results["candidates_per_clip"] == pytest.approx(11 / 3)
    # best captions: dog, dog, car -> labels {dog}, {dog}, {car}; truth misses only "bird"
    assert results["event_precision"] == 1.0 and results["event_recall"] == pytest.approx(3 / 4)
    for key in ("bleu_4", "meteor", "rouge_l", "sbert_max", "distinct_1", "self_bleu"):
        assert 0.0 < results[key] <= 1.0, key

    # Without true labels, the references' labels are the truth; here that adds nothing new.
    from_references = evaluate_captions(predictions, references, labels_of=keyword_labels, sbert=False, meteor=False)
    assert from_references["event_recall"] == 1.0
    assert "sbert_max" not in from_references and "meteor" not in from_references


def test_evaluate_captions_rejects_malformed_input_with_one_line():
    with pytest.raises(EdgeDacError, match="predictions for 1 clips but references for 2"):
        evaluate_captions([["a dog"]], [["a dog"], ["a cat"]], sbert=False, meteor=False)
    with pytest.raises(EdgeDacError, match=r"predictions\[0\] must be a list"):
        evaluate_captions(["a dog barks"], [["a dog"]], sbert=False, meteor=False)
    with pytest.raises(EdgeDacError, match=r"references\[0\] is empty"):
        evaluate_captions([["a dog barks"]], [[]], sbert=False, meteor=False)
    with pytest.raises(EdgeDacError, match="without labels_of"):
        evaluate_captions([["a dog"]], [["a dog"]], true_labels=[{"dog"}], sbert=False, meteor=False)


def test_fluency_is_the_share_of_broken_captions_best_and_all_and_of_redundant_and_misfit_ones():
    from edge_dac.evaluation.metrics import fluency_metrics

    predictions = [
        ["a gun fires and a twice and a", "a gun fires twice"],  # best broken, second whole
        ["a dog barks while rain falls", "a dog barks with"],
        ["in the rain, a dog barks before a car horn honks", "a drum an a with a in background"],
        ["a man speaks and then a man speaks again", "a man speaks"],  # whole, but redundant
        ["a siren applauds", "a siren wails"],  # whole, but a misfit: another sound's verb
    ]
    expected = {"broken": 0.2, "broken_all_candidates": 0.3, "redundant": 0.2, "misfit": 0.2}
    assert fluency_metrics(predictions) == expected
