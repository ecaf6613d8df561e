"""Encoder, denoiser, sampler and LM head really learn together.

A few hundred steps (``fit_clips`` of scripts/train_demo_model.py) on a handful of real recordings
(``train`` rows of the soundscape catalog), then ``edge-dac caption`` must give back each clip's
training caption exactly. Same for the AR baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from edge_dac.data.catalog import load_catalog, read_recording
from edge_dac.model import Captioner, ModelDims, normalize_caption, save_captioner, train_tokenizer

SECONDS = 4.0
# md5 of a train-split recording -> the caption it is trained on.
CLIPS = {
    "c7c9d8e65c53c57e7138ce04c56f081b": "a fire crackles and pops",
    "ab1bfbab677cd6be3383f8a45791d91a": "a loud explosion booms",
    "bcc2cdbe76d55378d475978b29beb5e5": "glass shatters on a hard floor",
    "3d552f2a5b4c3d5aa47586eba279c94c": "a machine gun fires rapidly",
    "a3dfb111c5b925898d129f2aab1b8bb0": "a wooden door creaks slowly",
    "9239dbbb1e4f88a41d0fbd4a1a5cd065": "a woman screams in fear",
    "7f8c425b4a085e828faa695ff7410ae6": "a telephone rings twice",
}


@pytest.fixture(scope="module")
def clip_files(soundscape_cache, tmp_path_factory):
    rows = {row.md5: row for row in load_catalog() if row.md5 in CLIPS}
    assert set(rows) == set(CLIPS), "test recordings missing from the catalog"
    assert all(row.split == "train" for row in rows.values())
    folder = tmp_path_factory.mktemp("clips")
    files, captions = [], []
    for md5, caption in CLIPS.items():
        audio = read_recording(rows[md5], soundscape_cache)[: int(SECONDS * 16_000)]
        path = folder / f"{md5}.wav"
        soundfile.write(path, audio, 16_000)
        files.append(path)
        captions.append(caption)
    return files, captions


@pytest.mark.slow
@pytest.mark.parametrize("kind,steps", [("dac", 300), ("ar", 200)])
def test_training_reproduces_captions_through_the_cli(kind, steps, clip_files, demo_trainer, tmp_path):
    files, captions = clip_files
    torch.manual_seed(0)
    tokenizer = train_tokenizer(captions, vocab_size=200)
    dims = ModelDims(
        kind=kind, vocab_size=len(tokenizer), max_audio_seconds=SECONDS, encoder_width=96, decoder_width=96,
        encoder_layers=2, decoder_layers=2, max_caption_tokens=12, embedding_dim=32, dropout=0.0,
    )
    captioner = Captioner(dims, tokenizer)
    length = int(SECONDS * 16_000)
    clips = [soundfile.read(f, dtype="float32")[0] for f in files]
    audio = torch.from_numpy(np.stack([np.pad(clip, (0, length - clip.size)) for clip in clips]))
    options = demo_trainer.FitOptions(steps=steps, batch_size=len(files))
    history = demo_trainer.fit_clips(captioner, audio, captions, options, progress=False)
    assert history[-1]["cross_entropy"] < 0.1 * history[0]["cross_entropy"]
    model_dir = save_captioner(captioner, tmp_path / "model")

    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "caption", "--model", str(model_dir), "--json", "--steps", "6",
         "--backend", "eager",
         *map(str, files)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, files))
    got = [line["caption"] for line in lines]
    want = [normalize_caption(tokenizer, caption) for caption in captions]
    assert got == want
