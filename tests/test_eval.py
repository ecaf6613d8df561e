"""``edge-dac eval`` and ``bench/dac_vs_ar.py``: the wiring around the metrics library.

The metrics themselves are checked against hand-computed values in ``test_metrics.py``; here the
model's outputs are fixed (a caption function that returns set captions) or come from tiny random
models, and the tests check what reaches metrics.json, captions.jsonl, report.md and the plots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_dac.cli import main
from edge_dac.data.datasets import CaptionItem, load_item_audio, load_manifest
from edge_dac.errors import EdgeDacError
from edge_dac.evaluation import diversity_metrics, event_f1
from edge_dac.evaluation.evaluate import (
    EvalOptions,
    caption_items,
    decoding_options,
    fit_window,
    score_clips,
    true_event_labels,
)
from edge_dac.evaluation.quality import coco_metrics
from edge_dac.evaluation.speed import generated_tokens, measure_speed
from edge_dac.lexicon import load_lexicon
from edge_dac.model import load_captioner, save_captioner
from edge_dac.model.decoding import Candidate
from tests.factories import tiny_captioner

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "edge_dac" / "assets" / "demo" / "manifest.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random DAC and AR checkpoints (2 s windows), marked untrained."""
    folder = tmp_path_factory.mktemp("models")
    return {
        kind: save_captioner(tiny_captioner(kind, seconds=2.0), folder / kind, metadata={"untrained": True})
        for kind in ("dac", "ar")
    }


# --- scoring with fixed model outputs ------------------------------------------------------------------


def _item(caption: str, events: list[dict] | None) -> CaptionItem:
    return CaptionItem(audio=Path("unused.flac"), captions=[caption], events=events, id=caption[:8])


def test_scores_use_the_first_candidate_all_candidates_and_the_manifest_events():
    items = [
        _item("a dog barks while rain falls", [{"class": "dog barking", "label": "?"}, {"class": "rain"}]),
        # No class: the catalog label is mapped to its class through the lexicon.
        _item("a car horn honks and thunder rumbles", [{"class": "", "label": "blackbird singing"}]),
        _item("a man speaks then a door slams twice", []),  # events listed: none
        _item("birds sing in the distance", None),  # no event list: left out of event-F1
    ]
    # Every best caption is its clip's reference; one clip has a second, different candidate.
    predictions = [[Candidate(item.captions[0], -0.1)] for item in items]
    predictions[0].append(Candidate("an owl hoots", -0.5))
    metrics = score_clips(predictions, items, sbert=False, meteor=False)

    assert metrics["bleu_4"] == pytest.approx(1.0) and metrics["rouge_l"] == pytest.approx(1.0)
    assert metrics["n_clips"] == 4 and metrics["candidates_per_clip"] == pytest.approx(5 / 4)
    assert metrics["vocab_size_all_candidates"] == metrics["vocab_size"] + 3  # an, owl, hoots
    assert "sbert_max" not in metrics and "meteor" not in metrics
    # Clip 1 names both its events (2 hits); clip 2 names car horn and thunder but holds birds
    # (2 false alarms, 1 miss); clip 3 names door and man speaking, holds nothing (2 false alarms).
    precision, recall = 2 / 6, 2 / 3
    assert metrics["event_precision"] == pytest.approx(precision)
    assert metrics["event_recall"] == pytest.approx(recall)
    assert metrics["event_f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert metrics["event_n_clips"] == 3


def test_event_labels_of_clips_are_lexicon_classes():
    lexicon = load_lexicon()
    manifest = load_manifest(DEMO)
    truth = [true_event_labels(item, lexicon) for item in manifest.items]
    # The references of the demo scenes name exactly their events, so reading them back agrees.
    for item, labels in zip(manifest.items, truth, strict=True):
        assert labels and all(lexicon.labels_in_caption(caption) == labels for caption in item.captions)
    assert true_event_labels(_item("x", None), lexicon) is None
    with pytest.raises(EdgeDacError, match="neither 'class' nor 'label'"):
        true_event_labels(_item("x", [{"onset": 0.0}]), lexicon)


def test_no_event_lists_means_no_event_metrics():
    items = [_item("a dog barks", None), _item("rain falls", None)]
    metrics = score_clips([[Candidate("a dog barks", 0.0)], [Candidate("rain", 0.0)]], items, sbert=False, meteor=False)
    assert not any(key.startswith("event_") for key in metrics)


# --- captioning, decoding options, speed --------------------------------------------------------------


def test_caption_items_keeps_clip_order_across_batches_and_pads_or_crops_to_the_window():
    items = load_manifest(DEMO).items
    window = 3 * 16_000  # the demo clips are 10 s: each is cut to its first 3 s
    seen = []

    def fixed_model(batch: np.ndarray) -> list[list[Candidate]]:
        seen.append(batch)
        return [[Candidate(f"clip {len(seen)}.{row}", 0.0)] for row in range(len(batch))]

    result = caption_items(fixed_model, items, 16_000, window, batch_size=2, keep=3)
    assert [len(batch) for batch in seen] == [2, 2, 1]
    captions = [clip[0].caption for clip in result.predictions]
    assert captions == ["clip 1.0", "clip 1.1", "clip 2.0", "clip 2.1", "clip 3.0"]
    expected = np.stack([fit_window(load_item_audio(item), window) for item in items])
    np.testing.assert_array_equal(np.concatenate(seen), expected)
    np.testing.assert_array_equal(result.windows, expected[:3])
    assert result.longer_than_window == 5
    assert fit_window(np.ones(4, np.float32), 6).tolist() == [1, 1, 1, 1, 0, 0]


def test_decoding_options_greedy_for_one_ar_candidate_beam_otherwise():
    assert decoding_options("ar", 6, 1).beam_size == 1
    assert decoding_options("ar", 6, 1, beam=3).beam_size == 3
    assert decoding_options("ar", 6, 5).beam_size == 5
    assert decoding_options("dac", 4, 5, beam=3).beam_size == 1
    with pytest.raises(EdgeDacError, match="--limit"):
        EvalOptions(limit=0)


def test_generated_tokens_stop_at_the_first_end_token_and_keep_repeats():
    eos, pad = 3, 0
    tokens = torch.tensor([[[5, 5, 6, eos, 7, eos], [eos, 5, 5, 5, 5, 5]], [[8, 8, 8, 8, 8, 8], [9, pad, 9, 9, 9, 9]]])
    assert generated_tokens(tokens, eos, pad) == 3 + 0 + 6 + 1


def test_speed_runs_on_one_thread_and_restores_the_thread_count(models):
    captioner = load_captioner(models["dac"])
    previous = torch.get_num_threads()
    threads_seen = []

    def pipeline(batch):
        threads_seen.append(torch.get_num_threads())
        return captioner.generate(batch)

    windows = np.random.default_rng(0).normal(0, 0.1, (3, captioner.dims.max_audio_samples)).astype(np.float32)
    results = measure_speed(
        captioner, windows, decoding_options("dac", 2, 3), batch_sizes=(1, 4), seconds=0.01, caption_fn=pipeline
    )
    assert torch.get_num_threads() == previous and set(threads_seen) == {1}
    assert [(r.stage, r.batch_size) for r in results] == [
        ("pipeline", 1), ("decode", 1), ("pipeline", 4), ("decode", 4)
    ]
    for result in results:
        assert result.iterations >= 2 and result.aps > 0
        # A random DAC model rarely writes [EOS]: rows are up to 12 tokens, 3 candidates per clip.
        assert 0 < result.tokens_per_batch <= 12 * 3 * result.batch_size
        assert result.tps == pytest.approx(result.aps * result.tokens_per_batch / result.batch_size)


# --- edge-dac eval end to end -------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_on_the_demo_scenes_writes_metrics_captions_report_and_plots(models, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "eval"
    code = main([
        "eval", "--model", str(models["dac"]), "--data", str(DEMO), "--out", str(out),
        "--candidates", "3", "--steps", "2", "--speed-seconds", "0.05", "--batch-size", "2",
    ])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    result = json.loads((out / "metrics.json").read_text())
    metrics = result["metrics"]
    for key in ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider_d", "sbert_max", "event_f1", "event_macro_f1",
                "distinct_1", "distinct_2", "self_bleu", "corpus_distinct_1", "vocab_size",
                "aps_pipeline_b1", "tps_pipeline_b1", "aps_decode_b1", "aps_pipeline_b32", "tps_decode_b32"):
        assert key in metrics, key
    assert result["model"]["kind"] == "dac" and result["model"]["metadata"] == {"untrained": True}
    assert result["data"]["n_clips"] == 5 and result["data"]["longer_than_window"] == 5
    assert result["decoding"]["steps"] == 2 and result["decoding"]["candidates"] == 3
    assert [r["steps"] for r in result["sweep"]["rows"]] == [1, 2, 4, 8, 16]
    assert {(r["stage"], r["batch_size"]) for r in result["speed"]["results"]} == {
        ("pipeline", 1), ("decode", 1), ("pipeline", 32), ("decode", 32)
    }

    # metrics.json agrees with the captions it reports (the wiring: best candidate, events, all candidates).
    clips = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert [clip["id"] for clip in clips] == [item.id for item in load_manifest(DEMO).items]
    assert all(len(clip["candidates"]) == 3 for clip in clips)
    best = [clip["candidates"][0]["caption"] for clip in clips]
    references = [clip["references"] for clip in clips]
    recomputed = coco_metrics(best, references, meteor=False)
    assert metrics["bleu_4"] == pytest.approx(recomputed["bleu_4"])
    assert metrics["cider_d"] == pytest.approx(recomputed["cider_d"])
    events = event_f1([clip["predicted_events"] for clip in clips], [clip["events"] for clip in clips])
    assert metrics["event_f1"] == pytest.approx(events["f1"])
    lexicon = load_lexicon()
    for clip, caption in zip(clips, best, strict=True):
        assert set(clip["predicted_events"]) == lexicon.labels_in_caption(caption)
    diversity = diversity_metrics([[c["caption"] for c in clip["candidates"]] for clip in clips])
    assert metrics["distinct_1"] == pytest.approx(diversity["distinct_1"])

    report = (out / "report.md").read_text()
    for heading in ("## Quality", "## Event-F1", "## Diversity", "## Speed (1 thread)", "## Denoising steps",
                    "## Sample clips", "untrained, random weights", clips[0]["id"], clips[0]["references"][0]):
        assert heading in report, heading
    for name in ("steps.png", "speed.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
        height, width, _ = matplotlib.image.imread(out / name).shape
        assert height > 100 and width > 100
        assert f"({name})" in report


@pytest.mark.slow
def test_eval_of_an_ar_model_greedy_without_sweep_or_sbert(models, tmp_path):
    out = tmp_path / "eval-ar"
    code = main([
        "eval", "--model", str(models["ar"]), "--data", str(DEMO), "--out", str(out), "--candidates", "1",
        "--no-sbert", "--no-meteor", "--speed-seconds", "0.05", "--limit", "3",
    ])
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["decoding"]["beam_size"] == 1 and result["data"]["n_clips"] == 3
    assert result["sweep"]["rows"] == [] and not (out / "steps.png").exists()
    assert "sbert_max" not in result["metrics"] and "meteor" not in result["metrics"]
    assert "event_f1" in result["metrics"] and (out / "speed.png").is_file()


# --- bad input: one line, exit 2 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "{tmp}/nope"], "model checkpoint directory not found"),
        (["--data", "{tmp}/missing.jsonl"], "caption dataset not found"),
        (["--data", "{tmp}/garbage.jsonl"], "not valid JSON"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--split", "train"], "no clips in split 'train'"),
        (["--out", "{tmp}/garbage.jsonl"], "exists and is not a folder"),
        (["--precision", "int4"], "offers fp32, not int4"),  # the eager backend's only precision
    ],
)
def test_bad_arguments_are_one_line_errors(models, tmp_path, capfd, args, expected):
    (tmp_path / "garbage.jsonl").write_text("{not json\n")
    argv = {"--model": str(models["dac"]), "--data": str(DEMO), "--out": str(tmp_path / "out")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        argv[flag] = value.format(tmp=tmp_path)
    code = main(["eval", *[part for pair in argv.items() for part in pair], "--no-speed", "--no-sweep"])
    err = capfd.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "ERROR" in line]) == 1


# --- bench/dac_vs_ar.py ---------------------------------------------------------------------------------

BENCH_SYSTEMS = [f"DAC {s} steps K={k}" for s in (1, 2, 4, 8) for k in (1, 5)] + ["AR greedy", "AR beam 3"]
SPEED_COLUMNS = ["system", "backend", "batch", "encoder ms", "decoder ms", "end-to-end ms", "tokens/s", "audios/s",
                 "event-F1", "SBERT", "broken", "same captions"]


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dac_vs_ar", REPO / "bench" / "dac_vs_ar.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def markdown_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first table after ``heading``: one dict per row, keyed by the header cells."""
    block, section = [], text.split(heading, 1)[1]
    for line in section.splitlines():
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            break
    header, rows = block[0], block[2:]
    assert all(set(cell) <= {"-"} for cell in block[1]), block[1]
    return [dict(zip(header, row, strict=True)) for row in rows]


def number(cell: str) -> float | None:
    """A printed figure or ratio ("1.23 ✓" -> 1.23); None for a dash."""
    return None if cell == "—" else float(cell.split()[0])


def check_bench_report(report: str, backends: tuple[str, ...], batches: tuple[int, ...]) -> dict:
    """Every table the bench prints, and every ratio in them recomputed from the printed figures."""
    quality = {row["system"]: row for row in markdown_table(report, "## Quality")}
    assert list(quality) == BENCH_SYSTEMS
    assert list(next(iter(quality.values()))) == ["system", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SBERT",
                                                   "event-F1", "broken"]
    diversity = {row["system"]: row for row in markdown_table(report, "## Diversity\n")}
    assert list(diversity) == BENCH_SYSTEMS and "MTLD" in diversity["AR greedy"]

    speed = markdown_table(report, "## Speed")
    assert list(speed[0]) == SPEED_COLUMNS
    expected = [(s, "eager", b) for b in batches for s in BENCH_SYSTEMS if s.startswith("AR")]
    expected = sorted(expected + [(s, backend, b) for b in batches for backend in backends for s in BENCH_SYSTEMS
                                  if s.startswith("DAC")])
    by_key = {(row["system"], row["backend"], int(row["batch"])): row for row in speed}
    assert sorted(by_key) == expected and len(speed) == len(expected)  # AR on eager only, no duplicates
    for (system, _, batch), row in by_key.items():
        encoder, decoder, e2e = (number(row[c]) for c in ("encoder ms", "decoder ms", "end-to-end ms"))
        assert encoder > 0 and decoder > 0 and e2e > 0, row
        assert number(row["audios/s"]) == pytest.approx(1000 / e2e, abs=1e-3), row
        assert number(row["tokens/s"]) > 0
        for column in ("event-F1", "SBERT", "broken"):  # beside the speed: the quality table's figures
            assert row[column] == quality[system][column], (row, column)
        same, total = map(int, row["same captions"].split("/"))
        assert total == batch and 0 <= same <= total

    # DAC speed-up over AR greedy: AR greedy's printed ms per window over DAC's, same batch.
    ratios = markdown_table(report, "## DAC speed-up over AR greedy")
    assert len(ratios) == len(backends) * len(batches) * 8
    for row in ratios:
        dac, ar = by_key[(row["system"], row["backend"], int(row["batch"]))], by_key[("AR greedy", "eager",
                                                                                        int(row["batch"]))]
        decode = number(ar["decoder ms"]) / number(dac["decoder ms"])
        e2e = number(ar["end-to-end ms"]) / number(dac["end-to-end ms"])
        # The speed issue's CPU targets: decoder >= 3x at batch 1 (no target at 32), end to end >= 1.5x.
        target = {1: 3.0}.get(int(row["batch"]))
        assert row["decode speed-up"] == f"{decode:.2f}" + ("" if target is None else " ✓" if decode >= 3 else " ✗")
        assert row["end-to-end speed-up"] == f"{e2e:.2f}" + (" ✓" if e2e >= 1.5 else " ✗")

    # K=5 cost: DAC end-to-end ms per window at K=5 over K=1, same steps, backend and batch.
    costs = markdown_table(report, "## Cost of K=5 candidates")
    assert [(row["DAC steps"], row["backend"]) for row in costs] == [
        (str(s), backend) for backend in backends for s in (1, 2, 4, 8)
    ]
    for row in costs:
        for batch in batches:
            k1, k5 = (number(by_key[(f"DAC {row['DAC steps']} steps K={k}", row["backend"], batch)]["end-to-end ms"])
                      for k in (1, 5))
            assert row[f"batch {batch}"] == f"{k5 / k1:.2f} " + ("✓" if k5 / k1 <= 1.3 else "✗"), row

    # Diversity against AR greedy, from the diversity table's printed figures.
    for row in markdown_table(report, "## Diversity against AR greedy"):
        for column, source in (("Distinct-1", "Distinct-1"), ("MTLD", "MTLD")):
            ar, dac = number(diversity["AR greedy"][source]), number(diversity[row["system"]][source])
            if ar and dac is not None:
                assert row[column] == f"{dac / ar:.2f} " + ("✓" if dac / ar >= 1.0 else "✗"), row
            else:
                assert row[column] == "—"
    return by_key


def fake_bench_results(bench, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Quality and speed rows as the bench builds them, with random figures."""
    rng = np.random.default_rng(seed)
    results, speed = [], []
    for system in bench.systems():
        metrics = {key: float(rng.uniform(0.05, 0.9)) for key in (
            "bleu_4", "rouge_l", "cider_d", "sbert_max", "event_f1", "broken", "corpus_distinct_1",
            "corpus_distinct_2", "distinct_1", "self_bleu")}
        metrics.update(corpus_mtld=float(rng.uniform(5, 30)), vocab_size=int(rng.integers(10, 300)))
        results.append({"name": system["name"], "steps": system["steps"], "candidates": system["candidates"],
                        "metrics": metrics})
        for backend in ("eager", "onnxruntime") if system["kind"] == "dac" else ("eager",):
            for batch in (1, 32):
                e2e = round(float(rng.uniform(1, 300)), 3)
                speed.append({"name": system["name"], "kind": system["kind"], "steps": system["steps"],
                              "candidates": system["candidates"], "backend": backend, "batch": batch,
                              "encoder_ms": round(float(rng.uniform(1, 100)), 3),
                              "decoder_ms": round(float(rng.uniform(0.5, 200)), 3), "e2e_ms": e2e,
                              "tokens_per_s": round(7000 / e2e, 3), "audios_per_s": round(1000 / e2e, 3),
                              "same_captions": f"{batch}/{batch}"})
    return results, speed


def test_dac_vs_ar_ratios_are_computed_from_the_printed_figures():
    bench = load_bench()
    results, speed = fake_bench_results(bench)
    drift = [{"batch": 1, "first_e2e_ms": 10.0, "again_e2e_ms": 11.0, "change": 0.1}]
    report = bench.render(results, speed, drift, ["# test"], ("eager", "onnxruntime"), (1, 32), plot="x.png")
    check_bench_report(report, ("eager", "onnxruntime"), (1, 32))
    assert "![quality against decoder ms per window](x.png)" in report and "(+10.0%)" in report
    # The check can fail: print another figure for AR greedy at batch 1 and the ratios no longer follow.
    greedy = "| AR greedy | eager | 1 |"
    line = next(line for line in report.splitlines() if line.startswith(greedy))
    cells = line.split(" | ")
    cells[4] = f"{2 * number(cells[4]):.3f}"  # decoder ms
    tampered = report.replace(line, " | ".join(cells))
    assert tampered != report
    with pytest.raises(AssertionError):
        check_bench_report(tampered, ("eager", "onnxruntime"), (1, 32))


@pytest.mark.slow
def test_dac_vs_ar_bench_times_every_stage_backend_and_batch_on_random_models(models, tmp_path):
    out = tmp_path / "dac-vs-ar.md"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "dac_vs_ar.py"), "--dac", str(models["dac"]), "--ar", str(models["ar"]),
         "--clips", "3", "--no-meteor", "--speed-seconds", "0", "--backends", "eager,onnxruntime",
         "--engines", str(tmp_path / "engines"), "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = result.stdout
    assert "on 3 clips" in report and "RANDOM, UNTRAINED" in report and "timed on eager, onnxruntime" in report
    by_key = check_bench_report(report, ("eager", "onnxruntime"), (1, 32))
    assert "AR greedy timed again after the DAC systems: batch 1:" in report
    assert all(number(row["SBERT"]) is not None for row in by_key.values())  # SBERT on, METEOR off

    assert out.read_text() + "\n" == report  # the file is what was printed
    document = json.loads((out.parent / "dac-vs-ar.md.json").read_text())
    assert document["settings"]["backends"] == ["eager", "onnxruntime"]
    assert document["settings"]["threads"] == 1 and document["settings"]["min_timed_calls"] == 3
    for row in document["speed"]:  # the JSON holds the printed figures, and what they are made of
        printed = by_key[(row["name"], row["backend"], row["batch"])]
        assert number(printed["end-to-end ms"]) == row["e2e_ms"] and number(printed["decoder ms"]) == row["decoder_ms"]
        assert min(row["timed_calls"].values()) >= 3
        assert row["tokens_per_s"] == pytest.approx(row["tokens_per_batch"] / row["batch"] * 1000 / row["e2e_ms"],
                                                    abs=1e-3)
    assert all(0.0 <= system["metrics"]["broken"] <= 1.0 for system in document["systems"])
    png = out.parent / "dac-vs-ar.png"
    assert png.read_bytes().startswith(PNG_MAGIC) and "](dac-vs-ar.png)" in report


@pytest.mark.slow
def test_dac_vs_ar_smoke_mode_builds_its_own_small_models(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "dac_vs_ar.py"), "--smoke", "--backends", "eager",
         "--batch-sizes", "1,4"],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on 3 clips" in result.stdout and "Smoke run" in result.stdout and "RANDOM, UNTRAINED" in result.stdout
    check_bench_report(result.stdout, ("eager",), (1, 4))


def test_dac_vs_ar_bench_builds_untrained_twins_when_given_no_models(tmp_path):
    bench = load_bench()
    captions = [c for item in load_manifest(DEMO).items for c in item.captions]
    dac_dir, ar_dir = bench.random_models(captions, tmp_path)
    dac, ar = load_captioner(dac_dir), load_captioner(ar_dir)
    assert (dac.dims.kind, ar.dims.kind) == ("dac", "ar") and bench.is_untrained(dac_dir) and bench.is_untrained(ar_dir)
    assert dac.dims.encoder_width == ar.dims.encoder_width == 192 and dac.dims.max_audio_seconds == 10.0
    assert dac.tokenizer.get_vocab() == ar.tokenizer.get_vocab()
    small = load_captioner(bench.random_models(captions, tmp_path / "smoke", smoke=True)[0])
    assert small.dims.max_audio_seconds == 2.0 and small.dims.encoder_width == 64


def test_dac_vs_ar_bench_refuses_half_a_pair(models):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "dac_vs_ar.py"), "--dac", str(models["dac"])],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 2 and "pass both --dac and --ar" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--limit", "0"], "--clips must be at least 1"),  # the older spelling of --clips still works
        (["--clips", "0"], "--clips must be at least 1"),
        (["--backends", "eager,tensorrt"], "--backends 'eager,tensorrt': choose from eager, onnxruntime"),
        (["--dac-backend", "nope"], "--dac-backend 'nope'"),
        (["--dac-backend", "eager", "--backends", "eager"], "pass one of them"),
        (["--batch-sizes", "1,0"], "--batch-sizes '1,0'"),
        (["--speed-seconds", "-1"], "--speed-seconds must not be negative"),
    ],
)
def test_dac_vs_ar_bench_flags_are_checked_before_any_work(args, expected, capsys):
    assert load_bench().main(["--batch-size", "8", "--no-sbert", *args]) == 2
    assert expected in capsys.readouterr().err
