"""The event head on YAMNet's ears (docs/dac-recipe.md, stage 10): fit it, put it in a checkpoint.

The event head ranks the K candidates and steers the words as they are written (model/decoding.py,
``event_agreement`` and ``event_bias``), so a head that hears better lifts the captions of both
kinds with no decoder training. Our encoder's head reaches event-F1 ~0.28 on unseen recordings;
YAMNet (model/hearing.py), trained on AudioSet, hears them far better.

  embed: mix fresh augmented train-split scenes (the training mixer and augmentation, a scene
         stream of its own; never val or test recordings), YAMNet embeddings of each 1 s patch,
         the scene's classes and per-patch SED targets from the mixer's event times; npz shards.
  fit:   the head (``EventHead``: a hidden layer of --hidden, frame logits, linear-softmax pooling) on those embeddings,
         BCE summed over classes, clip tagging + frame SED as in training; scored on the built
         corpus's val clips (unseen recordings); written into each --model's copy as
         ``event_features: yamnet``, every other weight unchanged.

  EDGE_DAC_CACHE=pack EDGE_DAC_CATALOG=pack/catalog.csv python scripts/yamnet_head.py embed \
      --scenes 16384 --part 0 --parts 2 --out runs/yamnet/train         # and --part 1, side by side
  python scripts/yamnet_head.py fit --data runs/yamnet/train --val corpus/manifest.jsonl \
      --model edge_dac/assets/model --model models/ar-tiny --out runs/yamnet
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from loguru import logger

from edge_dac.evaluation.events import event_f1
from edge_dac.model import load_captioner, save_captioner
from edge_dac.model.captioner import Captioner
from edge_dac.model.encoder import EventHead
from edge_dac.model.hearing import PATCH_HOP_SECONDS, YAMNet
from edge_dac.training.config import load_train_config
from edge_dac.training.data import MixedScenes, derive_seed, fit_samples, frame_targets
from edge_dac.training.start import make_mixer

_SEED = 61  # the head's scene stream, apart from training's and distillation's
CONFIG = "configs/finetune-dac-tiny-cpu.yaml"
SHARD = 256


def embed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    config = load_train_config(CONFIG)
    mixer = make_mixer(config, "train")
    samples = int(round(config.model.max_audio_seconds * config.model.sample_rate))
    source = MixedScenes(mixer, derive_seed(_SEED, 0), samples, config.augment)
    yamnet = YAMNet().eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for shard in range(args.part, args.scenes // SHARD, args.parts):
        path = out / f"shard-{shard:04d}.npz"
        if path.exists():
            continue  # resuming: a shard is written whole or not at all
        scenes = [source.scene(shard, 0, i) for i in range(SHARD)]
        audio = torch.from_numpy(np.stack([fit_samples(s.audio, samples) for s in scenes]))
        with torch.inference_mode():
            heard = torch.cat([yamnet(rows) for rows in audio.split(32)])
        events = [[(e["class"], e["onset"], e["offset"]) for e in s.events] for s in scenes]
        np.savez(
            path,
            heard=heard.half().numpy(),
            labels=np.array([json.dumps(sorted({e["class"] for e in s.events})) for s in scenes]),
            events=np.array([json.dumps(e) for e in events]),
        )
        logger.info(f"shard {shard}: {SHARD} scenes, {time.perf_counter() - started:.0f} s")


def _val(manifest: str, yamnet: YAMNet, clips: int) -> tuple[torch.Tensor, list[set[str]]]:
    root, audio, labels = Path(manifest).parent, [], []
    for line in Path(manifest).read_text().splitlines():
        item = json.loads(line)
        if item["split"] == "val" and len(labels) < clips:
            audio.append(fit_samples(sf.read(root / item["audio"], dtype="float32")[0], 160_000))
            labels.append({e["class"] for e in item["events"]})
    with torch.inference_mode():
        heard = torch.cat([yamnet(torch.from_numpy(np.stack(audio[i : i + 32]))) for i in range(0, len(audio), 32)])
    return heard, labels


def fit(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = [load_captioner(path) for path in args.model]
    dims = dataclasses.replace(models[0].dims, event_features="yamnet", event_hidden=args.hidden)
    classes = list(dims.event_classes)
    shards = sorted(Path(args.data).glob("shard-*.npz"))
    heard, clip_t, frame_t = [], [], []
    for path in shards:
        with np.load(path) as data:
            heard.append(torch.from_numpy(data["heard"]))
            rows = [json.loads(s) for s in data["labels"].tolist()]
            clip_t.append(torch.tensor([[c in set(r) for c in classes] for r in rows], dtype=torch.float32))
            events = [[tuple(e) for e in json.loads(s)] for s in data["events"].tolist()]
            frame_t.append(frame_targets(events, classes, data["heard"].shape[1], PATCH_HOP_SECONDS))
    heard, clip_t, frame_t = torch.cat(heard).float(), torch.cat(clip_t), torch.cat(frame_t)
    logger.info(f"{len(heard)} scenes from {len(shards)} shards")
    val_heard, val_labels = _val(args.val, YAMNet().eval(), args.val_clips)
    head = EventHead(dims, width=heard.shape[-1])
    # Standardised inputs train far faster; the statistics are folded into the head afterwards.
    mean, std = heard.mean((0, 1)), heard.std((0, 1)) + 1e-3
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * -(-len(heard) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps, pct_start=0.05)

    def score(threshold: float = 0.5) -> dict:
        head.eval()
        with torch.no_grad():
            clip = EventHead.clip_probabilities(head((val_heard - mean) / std))
        named = [{classes[j] for j in np.flatnonzero(row > threshold)} for row in clip.numpy()]
        return event_f1(named, val_labels)

    for epoch in range(args.epochs):
        head.train()
        for rows in torch.randperm(len(heard)).split(args.batch):
            logits = head((heard[rows] - mean) / std).float()
            clip = EventHead.clip_probabilities(logits).clamp(1e-6, 1 - 1e-6)
            tag = F.binary_cross_entropy(clip, clip_t[rows], reduction="none").sum(-1).mean()
            sed = F.binary_cross_entropy_with_logits(logits, frame_t[rows], reduction="none").sum(-1).mean()
            loss = tag + args.sed_weight * sed
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            s = score()
            logger.info(
                f"epoch {epoch + 1}: loss {loss.item():.2f}, "
                f"val event-F1 {s['f1']:.3f} (P {s['precision']:.2f} R {s['recall']:.2f})"
            )
    for threshold in (0.2, 0.3, 0.4, 0.5):
        s = score(threshold)
        logger.info(f"val event-F1 at {threshold}: {s['f1']:.3f} (P {s['precision']:.2f} R {s['recall']:.2f})")
    final = score()["f1"]  # before the folding below, which changes what the head reads
    first = head.frame if head.hidden is None else head.hidden[0]  # the layer that reads the embeddings
    with torch.no_grad():  # fold the standardisation: W (x - m) / s + b = (W / s) x + (b - W m / s)
        weight = first.weight / std
        first.bias -= weight @ mean
        first.weight.copy_(weight)
    for path, model in zip(args.model, models, strict=True):
        if [*model.dims.event_classes] != classes:
            raise SystemExit(f"{path}: its event classes differ from {args.model[0]}'s; fit one head per class list")
        heard_model = Captioner(
            dataclasses.replace(model.dims, event_features="yamnet", event_hidden=args.hidden), model.tokenizer
        )
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("events.")}
        state.update({f"events.{k}": v.to(model.events.frame.weight.dtype) for k, v in head.state_dict().items()})
        heard_model.load_state_dict(state, strict=True)
        out = Path(args.out) / Path(path).name
        card = (Path(path) / "README.md").read_text() if (Path(path) / "README.md").exists() else None
        metadata = json.loads((Path(path) / "config.json").read_text()).get("metadata", {})
        metadata["event_head"] = {
            "features": "yamnet", "hidden": args.hidden, "scenes": len(heard), "val_event_f1": round(final, 4)
        }
        save_captioner(heard_model.half(), out, metadata=metadata, card=card)  # fp16 as shipped
        logger.info(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--scenes", type=int, default=8192)
    e.add_argument("--part", type=int, default=0)
    e.add_argument("--parts", type=int, default=1)
    e.add_argument("--out", required=True)
    e.add_argument("--threads", type=int, default=1)
    f = sub.add_parser("fit")
    f.add_argument("--data", required=True)
    f.add_argument("--val", required=True, help="a built corpus's manifest.jsonl (its val clips score the head)")
    f.add_argument("--val-clips", type=int, default=1000)
    f.add_argument("--model", action="append", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--epochs", type=int, default=40)
    f.add_argument("--batch", type=int, default=128)
    f.add_argument("--lr", type=float, default=3e-3)
    f.add_argument("--weight-decay", type=float, default=1e-2)
    f.add_argument("--sed-weight", type=float, default=0.5)
    f.add_argument("--hidden", type=int, default=512, help="the head's hidden width (0: one linear layer)")
    f.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"embed": embed, "fit": fit}[args.command](args)


if __name__ == "__main__":
    main()
