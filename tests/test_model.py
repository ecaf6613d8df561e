"""The model module: shapes, export with a dynamic batch, decoding helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_dac.model import DecodingOptions, ModelDims, normalize_caption
from edge_dac.model.decoding import collapse_repeated_words, cut_and_collapse, minimum_bayes_risk_order
from edge_dac.model.frontend import LogMel
from edge_dac.model.graphs import AudioGraph, DenoiserStepGraph, example_inputs, export_graphs
from edge_dac.windows import plan_windows
from tests.factories import CAPTIONS, tiny_captioner


def test_log_mel_matches_numpy_stft():
    dims = ModelDims(vocab_size=10)
    rate = dims.sample_rate
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate).astype(np.float32)
    mel = LogMel(dims)(torch.from_numpy(tone)[None])
    assert mel.shape == (1, dims.n_mels, rate // dims.hop_length)
    # Cross-check the conv-DFT power spectrum against numpy's FFT on one interior frame.
    frame = 50
    start = frame * dims.hop_length - dims.n_fft // 2
    window = np.hanning(dims.n_fft + 1)[:-1]
    power = np.abs(np.fft.rfft(tone[start : start + dims.n_fft] * window)) ** 2
    module = LogMel(dims)
    padded = torch.nn.functional.pad(torch.from_numpy(tone)[None, None], (dims.n_fft // 2, dims.n_fft // 2))
    spectrum = torch.nn.functional.conv1d(padded, module.dft_basis, stride=dims.hop_length)[0, :, frame]
    real, imag = spectrum.chunk(2)
    np.testing.assert_allclose((real**2 + imag**2).numpy(), power, rtol=1e-3, atol=1e-2)
    # The 1 kHz tone's energy is in the mel bands around 1 kHz, not at the edges.
    peak_band = int(mel[0, :, frame].argmax())
    assert 10 < peak_band < dims.n_mels - 10


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
    assert first == again


@pytest.mark.parametrize("stem", ["conv1d", "cnn2d"])
def test_export_encoder_and_denoiser_step_with_dynamic_batch(stem):
    captioner = tiny_captioner("dac", stem=stem)
    programs = export_graphs(captioner, max_batch=16)
    for batch in (1, 5):
        inputs = example_inputs(captioner, batch=batch)
        with torch.no_grad():
            eager_audio = AudioGraph(captioner)(*inputs["audio"])
            exported_audio = programs["audio"].module()(*inputs["audio"])
            eager_logits, eager_x0 = DenoiserStepGraph(captioner)(*inputs["step"])
            exported_logits, exported_x0 = programs["step"].module()(*inputs["step"])
        assert exported_audio.shape[0] == batch
        torch.testing.assert_close(exported_audio, eager_audio, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(exported_logits, eager_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(exported_x0, eager_x0, atol=1e-4, rtol=1e-4)


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
     {"encoder_stem": "cnn2d", "n_mels": 60}],
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


def test_tokenizer_is_deterministic_and_keeps_whole_words():
    from edge_dac.model import train_tokenizer
    from edge_dac.model.tokenizer import encode_caption

    first, second = train_tokenizer(CAPTIONS, vocab_size=120), train_tokenizer(CAPTIONS, vocab_size=120)
    assert first.get_vocab() == second.get_vocab()
    assert len(encode_caption(first, "a dog barks while rain falls")) == 6
    # An unseen word made of seen letters still round-trips, as word pieces.
    assert normalize_caption(first, "A Dog Barks Twice") == "a dog barks twice"
