"""YAMNet, the event head's ears (model/hearing.py): its front end is TensorFlow's, and its patches
are independent of each other, so a window's embeddings are the same wherever it starts."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from edge_dac.const import ASSETS_DIR
from edge_dac.model.hearing import EMBEDDING_WIDTH, YAMNet

# tf.signal (TensorFlow 2.21) on the signal below, frame 10: |stft(400, 160, 512)| @
# linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500), log(+ 0.001), rounded to 3 decimals:
# YAMNet's features.py, computed once with TensorFlow (which no machine here needs to run).
TF_LOG_MEL_FRAME_10 = [
    -6.679, -4.967, -3.668, -1.943, -0.314, 0.045, -0.530, -2.158, -4.616, -4.674, -4.654, -5.120, -4.503,
    -3.777, -4.328, -2.889, -2.149, -1.359, 1.489, 3.607, 3.571, 1.058, -1.806, -2.228, -3.640, -3.681,
    -4.624, -4.684, -5.262, -5.457, -5.725, -6.048, -6.164, -6.499, -6.716, -6.616, -6.098, -5.573, -4.904,
    -3.900, -1.847, 2.631, 2.536, -2.051, -3.987, -5.001, -5.617, -6.024, -6.297, -6.468, -6.587, -6.657,
    -6.717, -6.764, -6.788, -6.814, -6.827, -6.843, -6.851, -6.860, -6.866, -6.871, -6.874, -6.876,
]  # fmt: skip


def test_the_front_end_is_yamnets_own():
    t = np.arange(16_000) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t) + 0.01 * np.sin(2 * np.pi * 317 * t)
    patches = YAMNet().patches(torch.tensor(x, dtype=torch.float32)[None])
    assert patches.shape == (1, 1, 96, 64)
    np.testing.assert_allclose(patches[0, 0, 10].numpy(), TF_LOG_MEL_FRAME_10, atol=2e-3)


def test_patches_are_independent_so_a_window_one_second_later_shares_them():
    """Each 0.96 s patch is heard on its own: the window starting 1 s later has the same embeddings,
    one place earlier (what lets a streaming daemon hear each hop's new patches once)."""
    audio, rate = sf.read(ASSETS_DIR / "demo" / "scape-test-000000.flac", dtype="float32")
    assert rate == 16_000
    yamnet = YAMNet().eval()
    with torch.no_grad():
        window = yamnet(torch.from_numpy(audio[: 8 * rate])[None])
        later = yamnet(torch.from_numpy(audio[rate : 9 * rate])[None])
    assert window.shape == (1, 8, EMBEDDING_WIDTH)
    torch.testing.assert_close(later[:, :-1], window[:, 1:], atol=1e-4, rtol=1e-4)
    # and different audio is heard differently
    assert (window[0, 0] - window[0, 1]).norm() > 0.2 * window[0, 0].norm()
