"""The model module: shapes, export with a dynamic batch, decoding helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_dac.engines.graphs import ContextGraph, StepGraph, example_inputs, export_programs
from edge_dac.lexicon import load_caption_pairs, load_caption_triples, load_lexicon
from edge_dac.model import DecodingOptions, ModelDims, normalize_caption
from edge_dac.model.checkpoint import load_captioner
from edge_dac.model.decoding import (
    collapse_repeated_words,
    cut_and_collapse,
    decode,
    drop_repeats,
    drop_run_ins,
    is_broken,
    is_misfit,
    is_redundant,
    mend_misfit,
    minimum_bayes_risk_order,
    whole_prefix,
)
from edge_dac.model.encoder import AvgPool, MonoConv2d
from edge_dac.model.frontend import LogMel
from edge_dac.windows import plan_windows
from tests.factories import CAPTIONS, tiny_captioner


def test_log_mel_matches_numpy_stft():
    dims = ModelDims(vocab_size=10)
    rate = dims.sample_rate
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate).astype(np.float32)
    mel = LogMel(dims)(torch.from_numpy(tone)[None])
    assert mel.shape == (1, dims.n_mels, rate // dims.hop_length)
    # Cross-check the DFT power spectrum against numpy's FFT on one interior frame.
    frame = 50
    start = frame * dims.hop_length - dims.n_fft // 2
    window = np.hanning(dims.n_fft + 1)[:-1]
    power = np.abs(np.fft.rfft(tone[start : start + dims.n_fft] * window)) ** 2
    module = LogMel(dims)
    spectrum = module.spectrum(torch.from_numpy(tone)[None])[0, :, frame]
    real, imag = spectrum.chunk(2)
    np.testing.assert_allclose((real**2 + imag**2).numpy(), power, rtol=1e-3, atol=1e-2)
    # The 1 kHz tone's energy is in the mel bands around 1 kHz, not at the edges.
    peak_band = int(mel[0, :, frame].argmax())
    assert 10 < peak_band < dims.n_mels - 10


def test_eager_stem_kernels_compute_what_the_exported_ops_do():
    """Eager PyTorch runs the front end and the CNN's first convolution and pooling in faster forms;
    exported and compiled graphs keep the standard ops. Both must give the same numbers, at every
    shape a window or a chunk can have (odd sizes fall back to the pooling op)."""
    torch.manual_seed(0)
    conv = MonoConv2d(8)
    for shape in ((2, 1, 64, 1000), (1, 1, 7, 13)):
        x = torch.randn(shape)
        reference = torch.nn.functional.conv2d(x, conv.weight, padding=1)
        torch.testing.assert_close(conv(x), reference, rtol=1e-5, atol=1e-5)
    for time_pool in (1, 2):
        pool, reference = AvgPool(time_pool), torch.nn.AvgPool2d((2, time_pool), ceil_mode=True)
        for shape in ((2, 4, 64, 1000), (1, 4, 15, 251), (1, 4, 8, 7)):
            x = torch.randn(shape)
            torch.testing.assert_close(pool(x), reference(x), rtol=0, atol=1e-6)
    dims = ModelDims(vocab_size=10)
    module, audio = LogMel(dims), torch.randn(2, dims.sample_rate) * 0.1
    padded = torch.nn.functional.pad(audio[:, None], (dims.n_fft // 2, dims.n_fft // 2))
    frames = audio.shape[-1] // dims.hop_length
    reference = torch.nn.functional.conv1d(padded, module.dft_basis[:, None], stride=dims.hop_length)[..., :frames]
    torch.testing.assert_close(module.spectrum(audio), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["dac", "ar"])
def test_loss_backward_and_generate_shapes(kind):
    captioner = tiny_captioner(kind)
    audio = torch.randn(3, captioner.dims.max_audio_samples) * 0.1
    losses = captioner.train().loss(audio, CAPTIONS)
    losses["total"].backward()
    assert torch.isfinite(losses["total"])
    grads = [p.grad for p in captioner.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "encoder must receive gradients"
    results = captioner.eval().generate(audio[:2], DecodingOptions(steps=2, candidates=3, beam_size=3))
    assert len(results) == 2 and all(len(r) == 3 for r in results)
    assert all(isinstance(c.caption, str) and np.isfinite(c.score) for r in results for c in r)


def test_dac_sampling_is_seeded():
    captioner = tiny_captioner("dac")
    audio = torch.randn(2, captioner.dims.max_audio_samples) * 0.1
    first = captioner.generate(audio, DecodingOptions(steps=3, candidates=4, seed=7))
    again = captioner.generate(audio, DecodingOptions(steps=3, candidates=4, seed=7))
    other = captioner.generate(audio, DecodingOptions(steps=3, candidates=4, seed=8))
    assert first == again and first != other


def test_the_same_window_gets_the_same_caption_at_any_row_of_any_batch():
    """The starting noise depends on the seed and the window's samples, never on its row."""
    captioner = tiny_captioner("dac")
    generator = torch.Generator().manual_seed(3)
    clip, other = (torch.randn(2, captioner.dims.max_audio_samples, generator=generator) * 0.1).unbind()
    options = DecodingOptions(steps=2, candidates=3)

    def captions(results):  # scores agree to float rounding (batched matmuls), captions exactly
        return [[c.caption for c in window] for window in results]

    alone = captions(decode(captioner, clip[None], options))[0]
    batch = captions(decode(captioner, torch.stack([other, clip, other, clip, clip]), options))
    assert [batch[i] for i in (1, 3, 4)] == [alone] * 3 and batch[0] != alone
    split = captions(decode(captioner, torch.stack([other, clip]), options, max_rows=3))  # one window a call
    assert split == [batch[0], alone]


def test_wording_codes_give_each_candidate_its_own_wording():
    """Candidate k is denoised under code k: the same starting noise under two codes gives two
    different predictions, and K candidates of one window cycle through the codes."""
    captioner = tiny_captioner("dac", wording_codes=4).eval()
    decoder = captioner.decoder
    assert decoder.candidate_codes(2, 5).tolist() == [0, 1, 2, 3, 0, 0, 1, 2, 3, 0]
    torch.nn.init.normal_(decoder.wording.weight, std=1.0)  # untrained codes are near zero
    dims = captioner.dims
    audio = torch.randn(1, dims.max_audio_samples) * 0.1
    kv = decoder.candidate_kv(decoder.prepare_audio(captioner.encode_audio(audio)), 2)
    noisy = torch.randn(1, dims.max_caption_tokens, dims.embedding_dim).repeat(2, 1, 1)
    with torch.no_grad():
        logits, _ = decoder.step(noisy, torch.ones(2), torch.zeros_like(noisy), torch.tensor([0, 1]), kv)
    assert not torch.allclose(logits[0], logits[1], atol=1e-3)
    candidates = captioner.generate(audio, DecodingOptions(steps=2, candidates=4, prefer_whole=False))[0]
    assert len(candidates) == 4


@pytest.mark.parametrize(
    ("stem", "codes", "chunk_seconds", "events"),
    [
        ("conv1d", 0, 0.0, False),
        ("cnn2d", 0, 0.0, True),
        ("conv1d", 3, 0.0, False),
        ("cnn2d", 0, 0.4, True),
        ("conv1d", 0, 0.0, "yamnet"),
    ],
)
def test_export_encoder_and_denoiser_step_with_dynamic_batch(stem, codes, chunk_seconds, events):
    captioner = tiny_captioner(
        "dac", stem=stem, wording_codes=codes, chunk_seconds=chunk_seconds,
        event_classes=("rain", "door") * bool(events), event_features="yamnet" if events == "yamnet" else "encoder",
    )
    if events == "yamnet":
        torch.nn.init.normal_(captioner.events.frame.weight, std=0.1)  # a head that reads YAMNet's output
    if codes:
        torch.nn.init.normal_(captioner.decoder.wording.weight, std=1.0)
    programs = export_programs(captioner, max_windows=16)
    for batch in (1, 5):
        inputs = example_inputs(captioner, batch=batch)
        assert len(inputs["step"]) == (6 if codes else 5)
        with torch.no_grad():
            eager_audio = ContextGraph(captioner)(*inputs["audio"])
            exported_audio = programs["audio"].module()(*inputs["audio"])
            eager_logits, eager_x0 = StepGraph(captioner)(*inputs["step"])
            exported_logits, exported_x0 = programs["step"].module()(*inputs["step"])
        assert exported_audio[0].shape[0] == batch
        assert len(exported_audio) == (3 if events else 2)  # the event head's clip probabilities
        torch.testing.assert_close(exported_audio, eager_audio, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(exported_logits, eager_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(exported_x0, eager_x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("caption", "broken"),
    [
        ("a gun fires and a twice and a", True),
        ("a bow is far away and a", True),
        ("a machine gun rattles off shots and then a woman says", True),  # cut off: no caption ends on "says"
        ("after a moment of quiet, a siren wails, followed by", True),  # from the demo
        ("after a moment of quiet", True),  # names nothing that sounds: an opening cut from its clause
        ("with a make in the background", True),
        ("a hammer rings", False),  # a sound's noun, though its verb fits no class
        ("a fire burns out with fire crackling fire crackles in the background", True),  # the demo, session 15
        ("a woman says something with a waterfall roaring waterfall", True),
        ("a boat moves through water with water flowing in the background", False),
        ("a car passes by", False),
        ("a drum an a with a in background the background", True),
        ("a car passes with", True),
        ("a gun fires twice and a twice", True),
        ("an drums and a owl", True),
        ("a machine gun rattles off shots and a xylophone is, followed by a woman", True),
        ("a tuba plays a low note, followed by a gun being, then a machine bleating", True),
        ("a gun is being", True),
        ("a tuba plays a low and then it goes quiet", True),  # an adjective without its noun
        ("a tuba plays a low", True),
        ("a machine gun rattles off shots with a flowing in the background", True),  # a participle, no noun
        ("a siren wails with a running", True),
        ("rain patters on a windshield and a roars in the background", True),  # an article before a verb
        ("after a moment of quiet, a dog barks, a says something", True),
        ("a tree crashes down traffic past in the background", True),  # two wordings run together
        ("rain patters on a windshield chainsaw overhead", True),
        ("a building collapsing with a phone ringing", False),
        ("crickets chirp repeatedly while a phone rings", False),  # "chirp repeatedly" only by class
        ("suddenly crickets chirp in a short clip", False),
        ("a dog barks while a zebra brays", False),  # words the corpus never writes are no evidence
        ("", True),
        ("the wind blows low and steady", False),
        ("a person types over and over", False),
        ("a race car roars by", False),
        ("an owl hoots and an engine idles", False),
        ("a dog barks while rain falls", False),
        ("in the rain, a dog barks before a car horn honks", False),
        ("a man speaks and then it goes quiet", False),
        ("after a moment of quiet, a helicopter is whines", True),  # three words no caption writes
        ("with music plays in the background", True),
        ("a waterfall roaring the background", True),
        ("birds chirp as music", True),  # a clause with its subject and no verb
        ("at first a crowd boos while a fire, then a dog barks", True),
        ("birds chirp as music plays", False),
        ("a train by as a fire by in the background", True),  # a particle with no verb
        ("people murmur as a crowd along", True),
        ("a train passes by as a fire crackles", False),
        ("someone chops wood over and over", False),
        ("a saw sawing wood along with a thud", False),
        ("as people chatter in the background, a dog barks", False),
        ("after a crow caws", True),  # a clause that waits for its main clause (none of 515,000 captions)
        ("as a machine gun rattles off shots", True),
        ("after a crow caws, a dog barks", False),
        ("a man says something as rain falling", True),  # a participle where the verb belongs
        ("people chatter as a people chattering", True),
        ("a dog barks as footsteps sound with birds singing in the background", False),
        ("a dog barks as birds sing", False),
        ("a harbor bustles in the background, then a open", True),  # "a" before a vowel
        ("a dog barks with a owl hooting", True),
    ],
)
def test_broken_captions_are_told_from_whole_ones(caption, broken):
    assert is_broken(caption) is broken


@pytest.mark.parametrize(
    ("caption", "repaired"),
    [
        ("a gun fires and a twice and a", "a gun fires"),
        ("a woman speaks and a man a", "a woman speaks"),
        ("a dog barks, then a", "a dog barks"),
        ("a machine gun rattles off shots and a xylophone is, followed by a woman", "a machine gun rattles off shots"),
        ("a dog barks while rain falls", "a dog barks while rain falls"),
        ("a with the", ""),
        ("rain patters on a windshield chainsaw overhead", "rain patters on a windshield"),
        ("a tree crashes down traffic past in the background", "a tree crashes down"),
        ("a man roars something a man says something, followed by a drum", "a man roars something"),
        ("water splashes as a stream", "water splashes"),
        ("a snake hisses in a fire with rain patters in the background", "a snake hisses in a fire"),
    ],
)
def test_a_broken_caption_is_cut_back_to_its_longest_whole_prefix(caption, repaired):
    assert whole_prefix(caption) == repaired
    assert not repaired or not is_broken(repaired)


@pytest.mark.parametrize(
    ("caption", "mended"),
    [  # the shipped DAC's best captions on the corpus's test split, before the word-pair rule
        ("a weapon hits a wooden shield cracks as a woman says something with traffic rushing",
         "a weapon hits a wooden shield as a woman says something with traffic rushing"),
        ("a man says something and a person types on a keyboard with waterfall a waterfall",
         "a man says something and a person types on a keyboard with a waterfall"),
        ("after a moment of quiet, insects chirp crickets", "after a moment of quiet, insects chirp"),
        ("a dog barks and a crickets chirp", "a dog barks and crickets chirp"),  # an article before a plural
        # no word can go so that the words meeting there are a pair the corpus writes: whole_prefix cuts
        ("a bell chimes as a background", ""),
        ("a dog barks while rain falls", "a dog barks while rain falls"),  # whole: as it is
    ],
)
def test_a_run_in_word_is_dropped_when_that_makes_the_caption_whole(caption, mended):
    assert drop_run_ins(caption) == mended
    assert not mended or not is_broken(mended)


def test_caption_pairs_back_off_to_word_classes_and_know_their_words(tmp_path):
    """A pair is heard as written or with one word replaced by its lexicon class; a word the table
    never saw is no evidence; a missing table finds nothing."""
    table = tmp_path / "pairs.txt"
    table.write_text("# test\n<s> a\na dog\ndog barks\nbarks repeatedly\nrepeatedly </s>\nbarks </s>\nhowls </s>\n")
    pairs = load_caption_pairs(table)
    assert pairs.unheard("a dog barks repeatedly") == []
    assert pairs.unheard("a dog howls repeatedly") == []  # "<verb> repeatedly", "dog <verb>"
    assert pairs.unheard("a dog dog barks") == [("dog", "dog")]
    assert pairs.unheard("a dog barks a zebra") == [("barks", "a")]  # "zebra" is unknown to the table
    assert load_caption_pairs(tmp_path / "missing.txt").unheard("dog a barks") == []


def test_caption_triples_back_off_to_word_classes_and_leave_joins_to_the_pairs(tmp_path):
    """A triple is heard as written or with one or two words replaced by their lexicon classes (a
    verb in the third person apart); one across a join of phrases is the pairs' to judge; a word the
    table never saw is no evidence; a missing table finds nothing."""
    import gzip

    table = tmp_path / "triples.txt.gz"
    lines = ["# test", "<s> a dog", "a dog barks", "dog barks </s>", "<s> a bell", "a bell is", "bell is rung",
             "is rung </s>", "dog barks and", "barks and a", "and a bell", "<s> the wolf", "the wolf howls",
             "wolf howls </s>"]
    table.write_bytes(gzip.compress("\n".join(lines).encode()))
    triples = load_caption_triples(table)
    assert triples.unheard("a dog barks") == []
    assert triples.unheard("a dog howls") == []  # "a dog <verb>"
    assert triples.unheard("the dog barks") == []  # "<noun> barks </s>" and "the <noun> <verb>"
    assert triples.unheard("a bell is rung") == []
    assert triples.unheard("a bell is barks") == [("bell", "is", "barks"), ("is", "barks", "</s>")]  # "is <verb-s>"
    assert triples.unheard("a dog barks and a bell is rung") == []
    assert triples.unheard("a bell barks and") == []  # ends on a join: no triple judged there
    assert triples.unheard("a dog barks twice") == []  # a count attaches anywhere: the pairs judge it
    assert triples.unheard("a zebra barks") == []  # "zebra" is unknown to the table
    assert load_caption_triples(tmp_path / "missing.gz").unheard("a dog is barks") == []


def test_an_article_before_a_plural_is_unheard_whatever_the_classes_say(tmp_path):
    """"a <noun>" is heard, yet "a crickets" is a slip: the article fits no plural the table never
    writes with one; a singular noun in "s" ("a bus") is no plural."""
    table = tmp_path / "pairs.txt"
    table.write_text(
        "<s> a\na dog\ndog barks\nbarks </s>\n<s> crickets\ncrickets chirp\nchirp </s>\n"
        "<s> the\nthe bus\nbus passes\npasses </s>\n"
    )
    pairs = load_caption_pairs(table)
    assert pairs.unheard("a dog barks") == []
    assert pairs.unheard("crickets chirp") == []
    assert pairs.unheard("a crickets chirp") == [("a", "crickets")]
    assert pairs.unheard("a bus passes") == []  # "a <noun>", as "a dog"


@pytest.mark.parametrize(
    ("caption", "repaired"),
    [  # the shipped DAC's best captions on the corpus's test split
        ("with people chattering in the background, a snake hisses, followed by a snake hissing",
         "with people chattering in the background, a snake hisses"),
        ("at first a woman says something while a woman says something", "at first a woman says something"),
        ("a machine gun rattles off shots with a stream roaring flowing in the background",
         "a machine gun rattles off shots with a stream roaring in the background"),
        ("a woman calls out with a fire crackling crackles in the background",  # from the demo
         "a woman calls out with a fire crackling in the background"),
        ("bees buzzing buzz as a dog barks", "bees buzzing as a dog barks"),
        ("a fire talks and a woman says something as a fire hisses with crickets in the background",
         "a fire talks and a woman says something with crickets in the background"),
        ("a fire hisses out, a person coughs and a fire crackles", "a fire hisses out, a person coughs"),
        ("a machine gun rattles off shots with traffic roaring past with traffic past in the background",
         "a machine gun rattles off shots with traffic roaring past in the background"),
    ],
)
def test_a_redundant_caption_loses_its_repeats_and_nothing_else(caption, repaired):
    assert is_redundant(caption)
    assert drop_repeats(caption) == repaired
    assert not is_broken(repaired)


@pytest.mark.parametrize(
    "caption",
    [
        "a dog barks while rain falls",
        "a building collapsing with something ringing",
        "a man and a woman speak",
        "after a tuba plays a low note, an engine sputters over a low electric hum",
        "rain falls as a tree falls over and over",
        "a jet engine whining while a car horn honks",  # "while" shares "whi" with "whining", no verb of it
    ],
)
def test_a_caption_that_names_each_sound_once_is_not_redundant(caption):
    assert not is_redundant(caption) and drop_repeats(caption) == caption


def _candidate_rows(captioner, *captions: str) -> list[list[int]]:
    """Token rows of ``captions`` as the sampler leaves them: [EOS] to the caption length (12)."""
    ids = [captioner.tokenizer.convert_tokens_to_ids(caption.split()) for caption in captions]
    return [row + [captioner.eos_id] * (12 - len(row)) for row in ids]


def test_ranking_repairs_broken_candidates_and_puts_whole_ones_first():
    from edge_dac.model.decoding import Candidate, rank_candidates

    captioner = tiny_captioner("dac")
    rows = _candidate_rows(captioner, "a dog barks while", "rain falls")
    scores = [[-0.1] * 12, [-3.0] * 12]  # the broken one is far more probable
    ranked = rank_candidates(captioner, rows, scores, DecodingOptions(candidates=2, rank="score", repair=False))
    assert [c.caption for c in ranked] == ["rain falls", "a dog barks while"]
    repaired = rank_candidates(captioner, rows, scores, DecodingOptions(candidates=2, rank="score"))
    assert repaired[0] == Candidate("a dog barks", repaired[0].score) and repaired[1].caption == "rain falls"


@pytest.mark.parametrize(
    ("caption", "misfit"),
    [  # the shipped DAC's best captions on the corpus's test split, and captions that must pass
        ("after a moment of quiet, a siren applauds wails", True),
        ("a telephone gobbles with a fire crackling in the background", True),
        ("a fire burns and a turkey wails", True),
        ("a crowd cheers as a fire burns crackles in the background", True),  # two verbs, from the demo
        ("a helicopter hovers rattles off shots", True),
        ("a beeping calls out a fire crackles", True),  # two verbs in one clause, from the demo
        ("rain patters on a windshield chainsaw roars", True),
        ("a tuba guitar is strummed, and then gun is reloaded", True),  # two nouns of two sounds
        ("after a moment of quiet, a shotgun gun fires", True),
        ("a car horn honks while a dog barks", False),  # a noun of two words; two clauses
        ("near running water, someone says something", False),  # a comma between the nouns
        ("a pickaxe chips at stone while a man says something in a busy port", False),
        ("footsteps on carpet sound near a busy road", False),  # "sound" is a verb too
        ("a dog barks while rain falls", False),
        ("a train whistle sounds as a car passes by", False),  # a noun of two words; "passes by"
        ("a snare drum is hit twice", False),  # an auxiliary before the verb
        ("glass breaks beside running water close by", False),  # "close by" is no verb
        ("a man speaks then a door slams twice", False),
    ],
)
def test_a_noun_with_another_sounds_verb_is_a_misfit(caption, misfit):
    assert is_misfit(caption) == misfit


@pytest.mark.parametrize(
    ("caption", "mended"),
    [  # the stage-9 DAC's best captions on the corpus's test split
        ("a phone truck rings several times and a kettle whistles",
         "a phone rings several times and a kettle whistles"),
        ("a toilet flushes sounds and a man says something with a waterfall roaring",
         "a toilet flushes and a man says something with a waterfall roaring"),
        ("steam fire hisses and a man says something", "steam hisses and a man says something"),
        # no word can go: cut back to the whole, fitting clauses before the slip
        ("a clock rings and a woman rings the background", "a clock rings"),
        ("a horn blows and a man says something and a turkey howls", "a horn blows and a man says something"),
        # dropping the slip would leave a clause without its verb or its noun, or a cut that names
        # no sound: as it is
        ("a train roars", "a train roars"),
        ("with birds flowing in the background", "with birds flowing in the background"),
        ("after a moment of quiet, a turkey roars while a cannon fires",
         "after a moment of quiet, a turkey roars while a cannon fires"),
        ("a dog barks while rain falls", "a dog barks while rain falls"),  # fits: as it is
    ],
)
def test_a_misfit_caption_is_mended_only_into_whole_sentences(caption, mended):
    assert mend_misfit(caption) == mended
    assert mended == caption or not (is_misfit(mended) or is_broken(mended))


def test_a_mended_misfit_keeps_its_place_after_the_fitting_captions():
    from edge_dac.model.decoding import rank_candidates

    captioner = tiny_captioner("dac")
    rows = _candidate_rows(captioner, "a dog barks while rain slams", "a door slams")
    scores = [[-0.1] * 12, [-3.0] * 12]  # the misfit one is far more probable
    ranked = rank_candidates(captioner, rows, scores, DecodingOptions(candidates=2, rank="score"))
    assert [c.caption for c in ranked] == ["a door slams", "a dog barks"]  # second: cut back to its first clause
    raw = rank_candidates(captioner, rows, scores, DecodingOptions(candidates=2, rank="score", repair=False))
    assert [c.caption for c in raw] == ["a door slams", "a dog barks while rain slams"]


def test_a_repair_that_leaves_a_word_twice_is_collapsed():
    """Cutting a run-in can bring two copies of a word together (the shipped DAC on the test split:
    "a car horn beeping by by in the background"); what the ranking shows never has them."""
    from edge_dac.const import default_model_dir
    from edge_dac.model.decoding import drop_run_ins, rank_candidates

    caption = "a car horn beeps by a by in the background"
    assert drop_run_ins(caption) == "a car horn beeps by by in the background"
    captioner = load_captioner(default_model_dir())  # its tokenizer has every word of the caption
    rows = _candidate_rows(captioner, caption, "rain falls")
    ranked = rank_candidates(captioner, rows, [[-0.1] * 12, [-3.0] * 12], DecodingOptions(candidates=2, rank="score"))
    assert ranked[0].caption == "a car horn beeps by in the background"


def test_ranking_puts_a_misfit_caption_after_fitting_ones():
    from edge_dac.model.decoding import rank_candidates

    captioner = tiny_captioner("dac")
    rows = _candidate_rows(captioner, "a dog slams", "a door slams")
    scores = [[-0.1] * 12, [-3.0] * 12]  # the misfit one is far more probable
    ranked = rank_candidates(captioner, rows, scores, DecodingOptions(candidates=2, rank="score"))
    assert [c.caption for c in ranked] == ["a door slams", "a dog slams"]
    plain = rank_candidates(captioner, rows, scores, DecodingOptions(candidates=2, rank="score", prefer_whole=False))
    assert [c.caption for c in plain] == ["a dog slams", "a door slams"]


def test_candidates_that_name_what_the_event_head_hears_come_first():
    from edge_dac.model.decoding import event_agreement, rank_candidates

    classes = ("dog barking", "rain", "door")
    captioner = tiny_captioner("dac", event_classes=classes)
    rows = _candidate_rows(captioner, "a door slams", "a dog barks while rain falls", "a dog barks")
    scores = [[-0.1] * 12, [-2.0] * 12, [-3.0] * 12]  # by score alone: the door first
    heard = [0.9, 0.05, 0.1]  # the head hears a dog, hardly rain, no door
    options = DecodingOptions(candidates=3, rank="score")
    ranked = rank_candidates(captioner, rows, scores, options, heard)
    assert [c.caption for c in ranked] == ["a dog barks", "a dog barks while rain falls", "a door slams"]
    # Rain heard too: the caption naming both wins; without the head's probabilities, the score order.
    both = rank_candidates(captioner, rows, scores, options, [0.9, 0.8, 0.1])
    assert both[0].caption == "a dog barks while rain falls"
    assert rank_candidates(captioner, rows, scores, options)[0].caption == "a door slams"
    off = DecodingOptions(candidates=3, rank="score", match_events=False)
    assert rank_candidates(captioner, rows, scores, off, heard)[0].caption == "a door slams"
    assert event_agreement("a dog barks", heard, classes) == pytest.approx(2 * 0.9 / (1 + 1.05))
    assert event_agreement("birds sing", heard, classes) == 0.0  # names no class the head knows


def test_cut_and_collapse_and_repeated_words():
    eos, pad = 3, 0
    assert cut_and_collapse([5, 6, 6, 7, 3, 8, 9], eos, pad) == [5, 6, 7]
    assert cut_and_collapse([5, 0, 6], eos, pad) == [5]
    assert collapse_repeated_words("an explosion and an explosion and an explosion") == "an explosion"
    assert collapse_repeated_words("a dog dog barks barks") == "a dog barks"
    assert collapse_repeated_words("rain falls rain falls , then thunder") == "rain falls , then thunder"
    distinct = "a man and a woman speak then a dog barks"
    assert collapse_repeated_words(distinct) == distinct


def test_minimum_bayes_risk_prefers_the_consensus():
    captions = ["a dog barks", "a cat meows loudly", "a dog barks loudly", "a dog barks twice"]
    assert minimum_bayes_risk_order(captions)[0] in (0, 2)
    assert minimum_bayes_risk_order(captions)[-1] == 1


def test_plan_windows_covers_the_file_and_aligns_the_tail():
    def spans(*args):
        return [(w.start, w.end) for w in plan_windows(*args)]

    assert spans(50, 100, 20) == [(0, 50)]  # shorter than a window: one short window
    assert spans(100, 100, 20) == [(0, 100)]
    assert spans(250, 100, 100) == [(0, 100), (100, 200), (150, 250)]  # the tail aligned to the end
    assert spans(300, 100, 50) == [(0, 100), (50, 150), (100, 200), (150, 250), (200, 300)]  # no extra tail
    with pytest.raises(ValueError):
        plan_windows(300, 100, 0)


@pytest.mark.parametrize(
    "bad",
    [{"schedule": "linear"}, {"encoder_stride": 3}, {"kind": "gpt"}, {"encoder_stem": "vgg"},
     {"encoder_stem": "cnn2d", "n_mels": 60}, {"encoder_chunk_seconds": 3.0}, {"encoder_chunk_seconds": 0.005},
     {"encoder_chunk_layers": 1}, {"encoder_chunk_seconds": 2.0, "encoder_chunk_layers": 5}],
)
def test_bad_dims_are_refused(bad):
    from edge_dac.errors import CheckpointError

    with pytest.raises(CheckpointError):
        ModelDims.from_dict({**ModelDims(vocab_size=100).to_dict(), **bad})


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_cnn2d_encoder_shortens_time_by_its_stride_for_any_length(stride):
    from edge_dac.model.encoder import AudioEncoder

    dims = ModelDims(vocab_size=100, encoder_stem="cnn2d", encoder_channels=8, encoder_width=32, encoder_heads=4,
                     encoder_layers=1, encoder_stride=stride, max_audio_seconds=2.0)
    encoder = AudioEncoder(dims).eval()
    for frames in (200, 199, 37):
        assert encoder(torch.randn(2, dims.n_mels, frames)).shape == (2, -(-frames // stride), 32)


def test_a_streaming_encoder_encodes_a_window_as_its_chunks_one_at_a_time():
    """What the daemon would do with a 2 s hop: each chunk encoded alone, the window mixed from them."""
    model = tiny_captioner("dac", seconds=2.0, stem="cnn2d")
    streaming = tiny_captioner("dac", seconds=2.0, stem="cnn2d", chunk_seconds=0.4)
    streaming.load_state_dict(model.state_dict())  # the same weights: chunking is how they are applied
    dims = streaming.dims
    audio = torch.randn(3, dims.max_audio_samples) * 0.1
    with torch.no_grad():
        whole = streaming.encode_audio(audio)
        chunk = dims.encoder_chunk_samples
        pieces = [streaming.encoder.encode_chunk(streaming.frontend(audio[:, i : i + chunk]))
                  for i in range(0, dims.max_audio_samples, chunk)]
        assert torch.allclose(streaming.encoder.mix(torch.cat(pieces, dim=1)), whole, atol=1e-5)
        # The chunk's own work cannot see the rest of the window; the window-level block can.
        later = audio.clone()
        later[:, chunk:] = 0.0
        assert torch.allclose(streaming.encoder.encode_chunk(streaming.frontend(later[:, :chunk])), pieces[0][:3])
        assert not torch.allclose(streaming.encode_audio(later)[:, :2], whole[:, :2], atol=1e-4)
        assert whole.shape == model.encode_audio(audio).shape
        # A clip that is not a whole number of chunks keeps its tail, as a shorter last chunk.
        short = audio[:, : dims.max_audio_samples - chunk // 2]
        assert streaming.encode_audio(short).shape == model.encode_audio(short).shape


def test_tokenizer_is_deterministic_and_keeps_whole_words():
    from edge_dac.model import train_tokenizer
    from edge_dac.model.tokenizer import encode_caption

    first, second = train_tokenizer(CAPTIONS, vocab_size=120), train_tokenizer(CAPTIONS, vocab_size=120)
    assert first.get_vocab() == second.get_vocab()
    assert len(encode_caption(first, "a dog barks while rain falls")) == 6
    # An unseen word made of seen letters still round-trips, as word pieces.
    assert normalize_caption(first, "A Dog Barks Twice") == "a dog barks twice"


def test_event_guidance_moves_only_event_words_toward_what_the_head_hears():
    from edge_dac.const import DEFAULT_MODEL_DIR
    from edge_dac.model.decoding import GUIDANCE_CLIP, event_bias, event_word_tokens

    captioner = load_captioner(DEFAULT_MODEL_DIR)
    classes, tokenizer = captioner.dims.event_classes, captioner.tokenizer
    words = event_word_tokens(tokenizer, classes, captioner.dims.vocab_size)
    dog, rain = classes.index("dog barking"), classes.index("rain")
    (bark,), (falls,), (the,), (with_,) = (tokenizer.encode(w) for w in ("barks", "falls", "the", "with"))
    assert words[dog, bark] == 1 and words[rain, falls] == 1
    assert words[:, the].sum() == 0 and words[:, with_].sum() == 0  # grammar is left to the decoder
    heard = torch.zeros(1, len(classes))
    heard[0, dog] = 0.9  # a dog, nothing else
    bias = event_bias(heard, words, guidance=2.0)[0]
    assert bias[bark] > 0 and bias[falls] == pytest.approx(-2.0 * GUIDANCE_CLIP)
    assert bias[the] == 0 and bias[with_] == 0
    assert event_bias(heard, words, guidance=0.0).abs().max() == 0


class _HearsOnly:
    """A runner whose event head hears one class: the shipped model's graphs otherwise."""

    def __init__(self, runner, classes, heard):
        self.runner, self.probabilities = runner, torch.tensor([float(c == heard) for c in classes])

    def context(self, windows, candidates):
        context, _ = self.runner.context(windows, candidates)
        return context, self.probabilities.expand(len(windows), -1).clone()

    def step(self, *args):
        return self.runner.step(*args)


@pytest.mark.parametrize("model", ["dac", "ar"])
def test_event_guidance_makes_the_decoder_name_the_sound_the_head_hears(model):
    """Real weights (the shipped DAC, its AR twin) on a real demo scene with no dog in it: told by
    its head that a dog barks, the guided decoder writes the dog; unguided, it does not."""
    from edge_dac.audio import load_audio
    from edge_dac.const import DEFAULT_MODEL_DIR, DEMO_DIR, REPO_ROOT
    from edge_dac.model.decoding import EagerRunner, decode

    captioner = load_captioner(DEFAULT_MODEL_DIR if model == "dac" else REPO_ROOT / "models" / "ar-tiny")
    audio = load_audio(DEMO_DIR / "scape-test-000000.flac", captioner.dims.sample_rate)
    runner = _HearsOnly(EagerRunner(captioner), captioner.dims.event_classes, "dog barking")
    lexicon = load_lexicon()

    def best(guidance):
        options = DecodingOptions(candidates=3, event_guidance=guidance)
        return decode(captioner, audio[None], options, runner)[0][0].caption

    assert "dog barking" not in lexicon.labels_in_caption(best(0.0))
    guided = best(5.0)  # past the default: an event-memory denoiser also reads the real head's frames
    assert "dog barking" in lexicon.labels_in_caption(guided), guided


def test_a_window_the_guidance_breaks_gets_the_unguided_decoders_whole_caption():
    """Real weights on a real demo scene, its head made to hear four sounds that are not there and the
    guidance pushed past the default: every guided candidate is broken ("a crashes with crashing in
    the"), so what the user reads is the unguided decoder's whole best caption (the same noise,
    ranked the same way), not a ruin."""
    from edge_dac.audio import load_audio
    from edge_dac.const import DEFAULT_MODEL_DIR, DEMO_DIR
    from edge_dac.model.decoding import DecodingTask, EagerRunner, is_broken

    captioner = load_captioner(DEFAULT_MODEL_DIR)
    audio = torch.from_numpy(load_audio(DEMO_DIR / "scape-test-000000.flac", captioner.dims.sample_rate))[None]
    classes, heard = captioner.dims.event_classes, ("dog barking", "church bells", "rain", "crash")
    runner = _HearsOnly(EagerRunner(captioner), classes, heard[0])
    runner.probabilities = torch.tensor([0.95 if c in heard else 0.0 for c in classes])
    task = DecodingTask(captioner, DecodingOptions(event_guidance=5.0), runner)
    windows = captioner.fit_length(audio)
    context, events = task.context(windows)
    guided = task.rank(*task.sample(context, task.noise(windows), task.bias(events)), events)[0]
    assert all(is_broken(c.caption) for c in guided), [c.caption for c in guided]
    unguided = task.rank(*task.sample(context, task.noise(windows)), events)[0]
    assert not is_broken(unguided[0].caption)
    assert [c.caption for c in task.run(audio)[0]] == [c.caption for c in unguided]


def test_in_a_batch_only_the_windows_the_guidance_breaks_decode_again():
    """The same real scene twice in one batch, the first window's head made to hear four sounds that
    are not there (its guided candidates all break), the second's a dog: the unguided pass runs for
    the first window's rows alone, and each window gets what it gets decoded on its own. The runner
    is the shipped model's own, with a counter on its steps."""
    from edge_dac.audio import load_audio
    from edge_dac.const import DEFAULT_MODEL_DIR, DEMO_DIR
    from edge_dac.model.decoding import DecodingTask, EagerRunner

    captioner = load_captioner(DEFAULT_MODEL_DIR)
    audio = torch.from_numpy(load_audio(DEMO_DIR / "scape-test-000000.flac", captioner.dims.sample_rate))
    classes, fake = captioner.dims.event_classes, ("dog barking", "church bells", "rain", "crash")
    heard = [torch.tensor([0.95 if c in fake else 0.0 for c in classes]),
             torch.tensor([0.95 if c == "dog barking" else 0.0 for c in classes])]
    options = DecodingOptions(event_guidance=5.0)

    def run(windows, probabilities):
        runner = _HearsOnly(EagerRunner(captioner), classes, None)
        runner.probabilities = torch.stack(probabilities)
        rows, step = [], runner.step
        runner.step = lambda noisy, *rest: rows.append(len(noisy)) or step(noisy, *rest)
        return [[c.caption for c in window] for window in DecodingTask(captioner, options, runner).run(windows)], rows

    both, rows = run(torch.stack([audio, audio]), heard)
    alone = [run(audio[None], [h])[0][0] for h in heard]
    assert both == alone
    k, steps = options.candidates, options.steps
    assert rows == [2 * k] * steps + [k] * steps  # the guided pass for both, the unguided for the first


def test_an_event_memory_denoiser_reads_the_heads_frames_and_its_training_leaves_the_head_alone():
    """``event_memory``: the denoiser cross-attends to one token per second of the event head's frame
    probabilities. Other frames give other logits; a call without them says what is missing; the
    caption loss trains the new projection but not the head (its probabilities keep their meaning)."""
    from edge_dac.errors import CheckpointError
    from edge_dac.training.config import TrainConfig
    from edge_dac.training.objectives import CaptionObjective

    captioner = tiny_captioner("dac", event_classes=("dog barking", "rain"), event_features="yamnet",
                               event_hidden=8, event_memory=True)
    decoder, dims = captioner.decoder, captioner.dims
    audio = torch.randn(1, dims.max_audio_samples) * 0.1
    features = captioner.encode_audio(audio)
    frames, _ = captioner.detect_events(features, audio)
    assert frames.shape == (1, dims.event_frames, 2) == (1, 2, 2)
    memory = decoder.prepare_audio(features, frames)
    assert memory.shape[1] == features.shape[1] + dims.event_frames
    shape = (1, dims.max_caption_tokens, dims.embedding_dim)
    noisy, t = torch.randn(shape), torch.full((1,), 0.5)
    with torch.no_grad():
        heard = decoder(noisy, t, torch.zeros(shape), memory)
        other = decoder(noisy, t, torch.zeros(shape), decoder.prepare_audio(features, 1 - frames))
    assert (heard - other).abs().max() > 1e-4
    with pytest.raises(ValueError, match="event_memory"):
        decoder.prepare_audio(features)

    objective = CaptionObjective(captioner.train(), TrainConfig())
    mel = captioner.frontend(audio)
    tokens, weights = captioner.caption_tokens(CAPTIONS[:1])
    heard_embeddings = captioner.hearing(audio)
    objective(mel, tokens, weights, heard=heard_embeddings)["total"].backward()
    assert decoder.event_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in captioner.events.parameters())  # no tagging targets: only the caption loss

    for kind, features_of in (("ar", "yamnet"), ("dac", "encoder")):
        with pytest.raises(CheckpointError, match="event_memory"):
            ModelDims(kind=kind, event_classes=("rain",), event_features=features_of, event_memory=True).validate()
