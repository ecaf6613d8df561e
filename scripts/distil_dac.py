"""Sequence-level distillation of DAC from its AR twin (docs/dac-recipe.md, stage 5).

Why: DAC's parallel decoder averages the five wordings of a scene into function words (the
multimodality of non-autoregressive decoding). Trained on one caption per scene, the AR twin's
beam-search output, the target becomes a function of the audio and the averaging goes away
(Kim & Rush 2016; Gu et al. 2018). The student keeps the teacher's encoder and event head frozen,
so both kinds hear with the same encoder and differ only in how they write, and only the DAC
decoder trains: on cached encoder features that is ~20x cheaper a step than training from audio.

Two steps, each resumable by re-running it (it appends shards / continues from ``last.pt``):

  teach: mix fresh augmented train-split scenes (never val or test recordings), encode them with
         the teacher, caption them by beam search, and pick the reference the teacher finds most
         likely; shards of fp16 features + both captions.
  train: the student (DAC decoder from --student, encoder + event head from the teacher) learns
         the teacher's captions from the cached features; validates on val scenes (event-F1 of
         the best of K=1 raw captions and the broken share); keeps the best in OUT/best.

  EDGE_DAC_CACHE=pack EDGE_DAC_CATALOG=pack/catalog.csv python scripts/distil_dac.py teach \
      --teacher runs/ar4/best --scenes 16384 --out runs/distil/data
  python scripts/distil_dac.py train --teacher runs/ar4/best --student edge_dac/assets/model \
      --data runs/distil/data --out runs/distil --max-minutes 60
  python scripts/distil_dac.py half --model runs/distil/best --out edge_dac/assets/model

Stage 11 (docs/dac-recipe.md): the teacher captions as the product decodes it (its event head's
guidance, ranking and repair), the shards keep the head's frame probabilities, and the student's
denoiser reads them (``--event-memory``, ``ModelDims.event_memory``); then its 4-step sampler is
halved to 2 under the same guidance:

  python scripts/distil_dac.py teach --teacher models/ar-tiny --scenes 8192 --parts 2 --part {0,1} \
      --out runs/distil/data
  python scripts/distil_dac.py train --teacher models/ar-tiny --student edge_dac/assets/model \
      --data runs/distil/data --out runs/distil/denoise --target beam --event-memory --val-steps 2 \
      --val-candidates 5 --steps 2500 --lr 3e-4 --threads 2 --max-minutes 55   # stopped at 1,500
  python scripts/distil_dac.py sampler --teacher runs/distil/denoise/ema1500 --data runs/distil/data \
      --out runs/distil/halving --online-teacher-steps 4 --steps-to 2 --val-candidates 5 --steps 600 \
      --every 100 --lr 2e-4 --threads 2 --max-minutes 26

Stage 11b (session 17, shipped): the same denoising run resumed from its ``last.pt`` to step 3,500
of a 4,000-step schedule, then its 10-step sampler halved straight to 2 steps (fresh noise, the
teacher in the loop), and the result written as fp16:

  python scripts/distil_dac.py train ... (as above) --val-steps 4 --steps 4000 --every 250 \
      --max-minutes 70     # stopped after step 3,500's validation; its EMA was the teacher below
  python scripts/distil_dac.py sampler --teacher runs/distil/denoise/last --data runs/distil/data \
      --out runs/distil/halving10 --online-teacher-steps 10 --steps-to 2 --val-candidates 5 --steps 500 \
      --every 100 --lr 2e-4 --threads 2 --max-minutes 40
  python scripts/distil_dac.py half --model runs/distil/halving10/last --out edge_dac/assets/model

Stage 6 distils the sampler on the same cached features (Luhman & Luhman 2021): the shipped DAC,
at its many-step default, writes the caption of each (scene, starting noise) pair; a copy of it
learns to write that caption from the same noise in a few steps, each step trained on the
sampler's own path (its inputs are the student's previous estimates, as at inference). The
target is a function of the noise as well as the audio, so K starting noises still give K
different captions (distilling to one caption per scene would make the K candidates identical).

  sampler-teach: for one draw of starting noise per cached scene, the teacher's raw tokens.
  sampler:       the student learns them in --steps-to sampler steps; keeps the best in OUT/best.

  python scripts/distil_dac.py sampler-teach --teacher edge_dac/assets/model --data runs/distil/data \
      --out runs/distil/sampler --draw 0
  python scripts/distil_dac.py sampler --teacher edge_dac/assets/model --data runs/distil/data \
      --out runs/distil/sampler --max-minutes 90

With ``--online-teacher-steps T`` the teacher samples each batch's targets from fresh noise in the
loop instead (no draws stored): progressive halving, e.g. the shipped 4-step model teaching a
2-step student (docs/dac-recipe.md, stage 9).

``stream`` trains a streaming encoder (``ModelDims.encoder_chunk_seconds``) to write the features of
the shipped whole-window encoder, from the audio of the same cached scenes (regenerated: the scene
stream is deterministic): its decoders then read it unchanged. Both kinds share the encoder, so one
streaming encoder serves DAC and its AR twin.

  EDGE_DAC_CACHE=pack EDGE_DAC_CATALOG=pack/catalog.csv python scripts/distil_dac.py stream \
      --teacher edge_dac/assets/model --data runs/distil/data --out runs/distil/stream --max-minutes 60
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger

from edge_dac.data.mixer import SceneMixer
from edge_dac.evaluation.events import event_f1
from edge_dac.lexicon import load_lexicon
from edge_dac.model import Captioner, DecodingOptions, load_captioner, save_captioner
from edge_dac.model.decoding import DecodingTask, event_bias, is_broken
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.encoder import EventHead
from edge_dac.training.config import load_train_config
from edge_dac.training.data import _SCENE, WORDINGS, MixedScenes, derive_seed, fit_samples, wording_code
from edge_dac.training.start import make_mixer

_TEACH_SEED = 51  # scene stream of the distillation data (apart from every training run's)
_VAL_SEED = 7  # val scenes drawn as training's validation draws them


def _scene_source(config_path: str, seed: int) -> tuple[MixedScenes, int]:
    config = load_train_config(config_path)
    mixer = make_mixer(config, "train")
    mixer.preload(progress=True)
    samples = int(round(config.model.max_audio_seconds * config.model.sample_rate))
    return MixedScenes(mixer, seed, samples, config.augment), samples


def teach(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    teacher = load_captioner(args.teacher).eval()
    # The teacher writes as the product does: steered by its event head, ranked and repaired.
    options = DecodingOptions(candidates=1, beam_size=args.beam, seed=0, event_guidance=args.guidance)
    task = DecodingTask(teacher, options)
    heard = getattr(task.runner, "heard", None)
    source, samples = _scene_source(args.config, derive_seed(_TEACH_SEED, args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mine = [shard for shard in range(args.scenes // args.shard_size) if shard % args.parts == args.part]
    started = time.perf_counter()
    for done, shard in enumerate(mine, 1):
        path = out / f"shard-{shard:04d}.npz"
        if path.exists():
            continue  # resuming: a shard is written whole or not at all
        features, events, captions, chosen, references, labels = [], [], [], [], [], []
        for first in range(0, args.shard_size, args.batch):
            scenes = [source.scene(shard, 0, first + i) for i in range(args.batch)]
            audio = teacher.fit_length(torch.from_numpy(np.stack([fit_samples(s.audio, samples) for s in scenes])))
            with torch.inference_mode():
                encoded = teacher.encode_audio(audio)
                clip = None
                if teacher.events is not None:  # the head's frame probabilities: what an event-memory student reads
                    frames, clip = teacher.detect_events(encoded, audio, heard.features(audio) if heard else None)
                    events.append(frames.half().numpy())
                if args.features_only:  # what sampler and stream read; the beam search is most of a shard
                    captions += [""] * len(scenes)
                    chosen += [""] * len(scenes)
                else:
                    ranked = task.rank(*task.sample(encoded, None, task.bias(clip)), clip)
                    captions += [candidates[0].caption for candidates in ranked]
                    chosen += [_most_likely(teacher, encoded[i : i + 1], s.captions) for i, s in enumerate(scenes)]
            if heard is not None:
                heard.kept.clear()  # no scene is heard twice
            features.append(encoded.half().numpy())
            references += [json.dumps(s.captions) for s in scenes]
            labels += [json.dumps(sorted({e["class"] for e in s.events})) for s in scenes]
        tmp = path.with_suffix(".tmp.npz")
        extra = {"events": np.concatenate(events)} if events else {}
        np.savez(tmp, features=np.concatenate(features), captions=np.array(captions), chosen=np.array(chosen),
                 references=np.array(references), labels=np.array(labels), **extra)
        tmp.rename(path)
        rate = (time.perf_counter() - started) / done
        logger.info(f"shard {shard + 1} ({done} of {len(mine)} here): {rate:.0f} s a shard; e.g. beam "
                    f"{captions[0]!r}, most likely reference {chosen[0]!r}")


def _most_likely(teacher: Captioner, features: torch.Tensor, captions: list[str]) -> str:
    """The reference the teacher finds most likely (mean log-probability per token): the scene's
    ground truth, in the wording that the audio predicts, so it is one function of the audio."""
    tokens, _ = teacher.caption_tokens(captions)
    decoder = teacher.decoder
    inputs = torch.cat([torch.full_like(tokens[:, :1], decoder.bos_id), tokens[:, :-1]], dim=1)
    logits = decoder(inputs, decoder.audio_kv(features.expand(len(captions), -1, -1)))
    log_probs = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None])[..., 0]
    mask = tokens != decoder.pad_id
    return captions[int(((log_probs * mask).sum(1) / mask.sum(1)).argmax())]


def _student(teacher: Captioner, student_path: str, codes: int, event_memory: bool = False) -> Captioner:
    """The student: DAC's decoder (and tokenizer) from ``student_path``, the teacher's encoder and
    event head, and ``codes`` wording codes (0 when each scene has one target wording); with
    ``event_memory`` its denoiser also reads the head's frame probabilities (new weights)."""
    init = load_captioner(student_path).float()
    if teacher.tokenizer.get_vocab() != init.tokenizer.get_vocab():
        raise SystemExit("the teacher and the student have different tokenizers; distillation needs one")
    dims = copy.deepcopy(init.dims)
    dims = type(dims).from_dict({**dims.to_dict(), "wording_codes": codes, "event_memory": event_memory,
                                 "event_classes": list(teacher.dims.event_classes)})
    student = Captioner(dims, init.tokenizer)
    student.encoder.load_state_dict(teacher.encoder.state_dict())
    if teacher.events is not None:
        student.events.load_state_dict(teacher.events.state_dict())
    decoder_state = {k: v for k, v in init.decoder.state_dict().items() if not k.startswith("code")}
    missing = student.decoder.load_state_dict(decoder_state, strict=False)
    if missing.unexpected_keys:
        raise SystemExit(f"unexpected decoder tensors: {missing.unexpected_keys[:3]}")
    return student


def _shards(folder: Path) -> list[Path]:
    """``teach``'s finished shards, in order (a shard being written is a .tmp.npz)."""
    paths = sorted(folder.glob("shard-*[0-9].npz"))
    if not paths:
        raise SystemExit(f"{folder}: no shards; run 'teach' first")
    return paths


def _load_shards(
    folder: Path, target: str
) -> tuple[np.ndarray, np.ndarray | None, list[list[str]], list[list[int]]]:
    """Features, the event head's frame probabilities (None in shards from before them) and, per
    scene, its target captions with their wording codes: one (the beam caption or the most likely
    reference, code 0) or all five references under their families' codes."""
    paths = _shards(folder)
    seed = derive_seed(_TEACH_SEED, 0)
    features, events, targets, codes = [], [], [], []
    for path in paths:
        shard = int(path.stem.split("-")[1])
        with np.load(path) as data:
            features.append(data["features"])
            if "events" in data:
                events.append(data["events"])
            if target != "family":
                targets += [[c] for c in data["chosen" if target == "reference" else "captions"].tolist()]
                codes += [[0]] * len(data["captions"])
                continue
            for index, references in enumerate(data["references"].tolist()):
                targets.append(json.loads(references))
                families = SceneMixer.caption_families(derive_seed(seed, _SCENE, shard, 0, index))
                codes.append([wording_code(family) for family in families])
    frames = np.concatenate(events) if len(events) == len(features) else None
    return np.concatenate(features), frames, targets, codes


def _val_scenes(config_path: str, count: int) -> tuple[np.ndarray, list[set[str]], list[str]]:
    config = load_train_config(config_path)
    mixer = make_mixer(config, "val")
    scenes = [mixer.mix(derive_seed(config.validation.seed, _VAL_SEED, i)) for i in range(count)]
    samples = int(round(config.model.max_audio_seconds * config.model.sample_rate))
    audio = np.stack([fit_samples(s.audio, samples) for s in scenes])
    return audio.astype(np.float32), [{e["class"] for e in s.events} for s in scenes], [s.captions[0] for s in scenes]


def _validate(model: Captioner, audio: np.ndarray, labels: list[set[str]], steps: int, candidates: int = 1) -> dict:
    """Event-F1 and broken share of the best caption: raw K=1 captions, or with ``candidates`` > 1
    the product's decoding (repair, ranking by grammar and the event head, event guidance)."""
    model.eval()
    lexicon = load_lexicon()
    if candidates > 1:
        options = DecodingOptions(steps=steps, candidates=candidates, seed=0)
    else:
        options = DecodingOptions(steps=steps, candidates=1, seed=0, prefer_whole=False, repair=False)
    captions = [c[0].caption for c in DecodingTask(model, options).run(audio)]
    scores = event_f1([lexicon.labels_in_caption(c) for c in captions], labels)
    return {"event_f1": scores["f1"], "broken": sum(map(is_broken, captions)) / len(captions),
            "examples": captions[:3]}


class _Run:
    """What the training steps share: AdamW on one of the student's modules (``name``: "decoder" or
    "encoder"), an EMA of it with a warm-up, a warm-up then cosine learning rate (lr to lr/10),
    exact resume from OUT/last.pt, the validation log (OUT/metrics.jsonl) and OUT/best."""

    def __init__(self, student: Captioner, name: str, args: argparse.Namespace, warmup: int, reset_ema: bool = False):
        self.student, self.name, self.args, self.warmup = student, name, args, warmup
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.module: torch.nn.Module = getattr(student, name)
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=args.lr, weight_decay=0.01)
        self.ema = copy.deepcopy(self.module).eval()
        self.step, self.best = 0, -1.0
        self.resume = self.out / "last.pt"
        if self.resume.exists():
            state = torch.load(self.resume, weights_only=False)
            self.module.load_state_dict(state[name])
            self.ema.load_state_dict(state[name] if reset_ema else state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.best = state["step"], state["best"]
            logger.info(f"resumed at step {self.step} (best val event-F1 {self.best:.3f})")
        self.rng = np.random.default_rng(derive_seed(args.seed, self.step))
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.log = (self.out / "metrics.jsonl").open("a")

    def running(self) -> bool:
        """Whether to take another step (and the trained module in training mode for it)."""
        self.module.train()
        return self.step < self.args.steps and time.monotonic() < self.deadline

    def update(self, loss: torch.Tensor) -> None:
        step, args = self.step, self.args
        lr = args.lr * min(1.0, (step + 1) / self.warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / args.steps)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), 1.0)
        self.optimizer.step()
        # EMA with a warm-up: a fixed 0.999 would still hold 37 % of the starting weights at step 1,000.
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.module.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        self.step += 1
        if self.step % 25 == 0:
            logger.info(f"step {self.step}: loss {loss.item():.4f}, lr {lr:.2e}")

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[Captioner]:
        """The student with the EMA in place of the trained module, to validate and keep."""
        setattr(self.student, self.name, self.ema)
        try:
            yield self.student
        finally:
            setattr(self.student, self.name, self.module)

    def record(self, metrics: dict, score: float, metadata: dict) -> None:
        """Log a validation (of ``ema_weights``), keep OUT/best when ``score`` is the best yet, save last.pt."""
        self.log.write(json.dumps({"step": self.step, **metrics}) + "\n")
        self.log.flush()
        if score > self.best:
            self.best = score
            with self.ema_weights() as model:
                save_captioner(model, self.out / "best", {"step": self.step, "validation": metrics, **metadata})
        if self.step:
            torch.save({self.name: self.module.state_dict(), "ema": self.ema.state_dict(),
                        "optimizer": self.optimizer.state_dict(), "step": self.step, "best": self.best}, self.resume)

    def train(self, loss: Callable[[], torch.Tensor], evaluate: Callable[[], None]) -> None:
        """Validate at step 0, then step on ``loss()`` until --steps or --max-minutes, validating
        every --every steps and at the end."""
        if self.step == 0:
            evaluate()
        while self.running():
            self.update(loss())
            if self.step % self.args.every == 0:
                evaluate()
        if self.step % self.args.every:
            evaluate()
        # The last EMA as a checkpoint too: event-F1 alone keeps OUT/best, and a run is chosen on
        # SBERT and CIDEr-D as well (docs/dac-recipe.md, stage 11).
        with self.ema_weights() as model:
            save_captioner(model, self.out / "last", {"step": self.step, "run": str(self.out)})
        logger.info(f"stopped at step {self.step}; best val event-F1 {self.best:.3f} in {self.out / 'best'}, "
                    f"the last EMA in {self.out / 'last'}")


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher = load_captioner(args.teacher)
    codes = len(WORDINGS) if args.target == "family" else 0
    student = _student(teacher, args.student, codes=codes, event_memory=args.event_memory)
    decoder = student.decoder
    assert isinstance(decoder, DiffusionDecoder)
    guided = DecodingTask(student, DecodingOptions(event_guidance=args.guidance)).word_tokens

    def load() -> tuple[np.ndarray, np.ndarray | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features, event frames, target tokens and weights (scenes, targets, length), wording codes
        (scenes, targets)."""
        features, frames, targets, codes = _load_shards(Path(args.data), args.target)
        logger.info(f"{len(targets)} distilled scenes, features {features.shape}, targets: {args.target}")
        if (args.event_memory or args.sampler_steps) and frames is None:
            raise SystemExit(f"{args.data}: shards without the event head's frames; run 'teach' again")
        width = max(map(len, targets))
        flat = [row[i % len(row)] for row in targets for i in range(width)]
        tokens, weights = (x.view(len(targets), width, -1) for x in student.caption_tokens(flat))
        table = torch.tensor([[row[i % len(row)] for i in range(width)] for row in codes])
        return features, frames, tokens, weights, table

    features, frames, tokens, weights, code_table = load()
    val_audio, val_labels, val_refs = _val_scenes(args.config, args.val_scenes)
    run = _Run(student, "decoder", args, warmup=100, reset_ema=args.reset_ema)

    def evaluate_and_keep() -> None:
        nonlocal features, frames, tokens, weights, code_table
        if len(_shards(Path(args.data))) * args.shard_size > len(features):
            features, frames, tokens, weights, code_table = load()  # 'teach' is still writing shards
        with run.ema_weights() as model:
            metrics = _validate(model, val_audio, val_labels, args.val_steps, args.val_candidates)
        logger.info(f"step {run.step}: val event-F1 {metrics['event_f1']:.3f}, broken {metrics['broken']:.2f}, "
                    f"e.g. {metrics['examples'][0]!r} (reference {val_refs[0]!r})")
        run.record(metrics, metrics["event_f1"], {"distilled_from": str(args.teacher), "run": str(run.out)})

    def loss() -> torch.Tensor:
        rows = torch.from_numpy(run.rng.integers(len(features), size=args.batch))
        pick = torch.from_numpy(run.rng.integers(tokens.shape[1], size=args.batch))
        audio = torch.from_numpy(features[rows.numpy()]).float()
        events = torch.from_numpy(frames[rows.numpy()]).float() if frames is not None else None
        target, weight = tokens[rows, pick], weights[rows, pick]
        if args.sampler_steps:
            shape = (args.batch, student.dims.max_caption_tokens, student.dims.embedding_dim)
            noise = torch.from_numpy(run.rng.standard_normal(shape, dtype=np.float32))
            return _sampler_path_loss(decoder, audio, events, target, weight, args.sampler_steps, guided, args.guidance,
                                      noise)
        return decoder.loss(target, audio, weight, self_cond_prob=0.5, unroll_prob=0.5,
                            codes=code_table[rows, pick] if decoder.wording is not None else None,
                            events=events if args.event_memory else None).total

    run.train(loss, evaluate_and_keep)


def _guidance_bias(
    events: torch.Tensor | None, word_tokens: torch.Tensor | None, guidance: float
) -> torch.Tensor | None:
    """The product's event guidance, (batch, 1, vocab) logit offsets, from the head's frame probabilities."""
    if events is None or word_tokens is None or guidance <= 0:
        return None
    return event_bias(EventHead.pool(events), word_tokens, guidance)[:, None, :]


def _sampler_path_loss(
    decoder: DiffusionDecoder,
    audio: torch.Tensor,
    events: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    steps: int,
    word_tokens: torch.Tensor | None,
    guidance: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    """The few-step sampler, run from fresh noise as the product runs it (event guidance included),
    learns to end every step at the target: cross-entropy of each step's steered logits. Each step's
    inputs are its own previous estimates, detached (each step learns to finish from where the
    previous one left off, as at inference)."""
    batch = len(target)
    memory = decoder.prepare_audio(audio, events)
    bias = _guidance_bias(events, word_tokens, guidance)
    x = noise
    self_cond = torch.zeros_like(x)
    times = torch.linspace(1.0, 0.0, steps + 1)
    total = torch.zeros(())
    for i in range(steps):
        t, t_next = times[i].expand(batch), times[i + 1].expand(batch)
        logits = decoder(x, t, self_cond, memory)
        if bias is not None:
            logits = logits + bias
        token_loss = F.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")
        total = total + (token_loss * weights).sum() / weights.sum() / steps
        x0 = decoder.expected_embedding(logits).detach()
        self_cond = x0
        x = decoder.ddim_step(x, x0, t, t_next)
    return total

def _features(folder: Path) -> np.ndarray:
    return np.concatenate([np.load(path)["features"] for path in _shards(folder)])


def sampler_teach(args: argparse.Namespace) -> None:
    """One draw of starting noise per cached scene and the teacher's raw tokens from it."""
    torch.set_num_threads(args.threads)
    teacher = load_captioner(args.teacher).float().eval()
    decoder = teacher.decoder
    assert isinstance(decoder, DiffusionDecoder)
    task = DecodingTask(teacher, DecodingOptions(steps=args.teacher_steps, candidates=1, seed=0))
    features = _features(Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"draw-{args.draw:02d}.npz"
    if path.exists():
        return
    generator = torch.Generator().manual_seed(derive_seed(_TEACH_SEED, 1000 + args.draw))
    shape = (len(features), teacher.dims.max_caption_tokens, teacher.dims.embedding_dim)
    # Stored as fp16 and used as stored, so that teacher and student start from the same noise.
    noise = torch.randn(shape, generator=generator).half()
    tokens = []
    started = time.perf_counter()
    for first in range(0, len(features), args.batch):
        audio = torch.from_numpy(features[first : first + args.batch]).float()
        with torch.inference_mode():
            context = decoder.candidate_kv(decoder.prepare_audio(audio), 1)
            tokens.append(task.sample(context, noise[first : first + len(audio)].float())[0].short())
        if (first // args.batch) % 20 == 0:
            done = first + len(audio)
            logger.info(f"draw {args.draw}: {done} of {len(features)} scenes, "
                        f"{(time.perf_counter() - started) / done * 1000:.0f} ms a scene")
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, noise=noise.numpy(), tokens=torch.cat(tokens).numpy())
    tmp.rename(path)
    logger.info(f"{path}: {len(features)} scenes in {time.perf_counter() - started:.0f} s")


def _sampler_targets(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting noise (draws x scenes, length, emb) and the teacher's tokens from it."""
    paths = sorted(folder.glob("draw-*[0-9].npz"))
    if not paths:
        raise SystemExit(f"{folder}: no teacher draws; run 'sampler-teach' first")
    loaded = [np.load(path) for path in paths]
    return (torch.from_numpy(np.stack([d["noise"] for d in loaded])),
            torch.from_numpy(np.stack([d["tokens"] for d in loaded]).astype(np.int64)))


def _token_weights(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """caption_tokens' weights for raw decoder output: 1 up to the first [EOS], 0.1 after it."""
    after = (tokens == eos_id).long().cumsum(-1) - (tokens == eos_id).long() > 0
    return torch.where(after, 0.1, 1.0)


def sampler(args: argparse.Namespace) -> None:
    """The student learns, in --steps-to sampler steps, the teacher's many-step tokens."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher = load_captioner(args.teacher).float()
    student = copy.deepcopy(teacher)
    decoder = student.decoder
    assert isinstance(decoder, DiffusionDecoder)
    features, frames, _, _ = _load_shards(Path(args.data), "beam")
    if decoder.event_proj is not None and frames is None:
        raise SystemExit(f"{args.data}: shards without the event head's frames; run 'teach' again")
    # Online, teacher and student decode under the product's event guidance; stored draws were unguided.
    guidance = args.guidance if args.online_teacher_steps else 0.0
    word_tokens = DecodingTask(student, DecodingOptions(event_guidance=guidance)).word_tokens
    if args.online_teacher_steps:
        # Progressive halving with the teacher in the loop: a fresh starting noise for every row of
        # every step, so the student cannot fit a fixed set of (scene, noise) pairs (stage 6's
        # continued run did, on 40,960 of them).
        teacher.eval()
        teacher_task = DecodingTask(teacher, DecodingOptions(steps=args.online_teacher_steps, candidates=1, seed=0,
                                                             event_guidance=guidance))
        noise = targets = None
        logger.info(f"{len(features)} scenes, fresh noise each step; the teacher samples in "
                    f"{args.online_teacher_steps} steps, the student in {args.steps_to}")
    else:
        noise, targets = _sampler_targets(Path(args.out))
        logger.info(f"{noise.shape[0]} draws x {noise.shape[1]} scenes; the student samples in {args.steps_to} steps")
    val_audio, val_labels, val_refs = _val_scenes(args.config, args.val_scenes)
    run = _Run(student, "decoder", args, warmup=50)
    k = args.val_candidates
    if args.online_teacher_steps and run.step == 0:
        mark = _validate(teacher, val_audio, val_labels, args.online_teacher_steps, k)
        logger.info(f"teacher at {args.online_teacher_steps} steps: val event-F1 {mark['event_f1']:.3f}, "
                    f"broken {mark['broken']:.2f}")

    def evaluate_and_keep() -> None:
        with run.ema_weights() as model:
            metrics = {f"steps_{n}": _validate(model, val_audio, val_labels, n, k) for n in (1, args.steps_to)}
        mine = metrics[f"steps_{args.steps_to}"]
        logger.info(f"step {run.step}: val event-F1 at 1 / {args.steps_to} steps "
                    f"{metrics['steps_1']['event_f1']:.3f} / {mine['event_f1']:.3f}, broken {mine['broken']:.2f}, "
                    f"e.g. {mine['examples'][0]!r} (reference {val_refs[0]!r})")
        run.record(metrics, mine["event_f1"], {"sampler_steps": args.steps_to, "distilled_from": str(args.teacher)})

    def draw() -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """Scene rows, their starting noise and the teacher's tokens from it."""
        if noise is not None and targets is not None:
            draws = torch.from_numpy(run.rng.integers(noise.shape[0], size=args.batch))
            rows = run.rng.integers(noise.shape[1], size=args.batch)
            return rows, noise[draws, rows].float(), targets[draws, rows]
        rows = run.rng.integers(len(features), size=args.batch)
        shape = (args.batch, student.dims.max_caption_tokens, student.dims.embedding_dim)
        x = torch.from_numpy(run.rng.standard_normal(shape, dtype=np.float32))
        with torch.no_grad():
            events = _events(rows)
            memory = teacher.decoder.prepare_audio(torch.from_numpy(features[rows]).float(), events)
            bias = _guidance_bias(events, teacher_task.word_tokens, guidance)
            tokens = teacher_task.sample(teacher.decoder.candidate_kv(memory, 1), x,
                                         None if bias is None else bias[:, 0])[0]
        return rows, x, tokens

    def _events(rows: np.ndarray) -> torch.Tensor | None:
        """The head's frame probabilities of these scenes where the denoiser or the guidance reads them."""
        if frames is None or (decoder.event_proj is None and word_tokens is None):
            return None
        return torch.from_numpy(frames[rows]).float()

    def loss() -> torch.Tensor:
        rows, x, target = draw()
        weights = _token_weights(target, student.eos_id)
        audio = torch.from_numpy(features[rows]).float()
        return _sampler_path_loss(decoder, audio, _events(rows), target, weights, args.steps_to, word_tokens,
                                  guidance, x)

    run.train(loss, evaluate_and_keep)


def stream(args: argparse.Namespace) -> None:
    """A streaming encoder learns the whole-window encoder's features (and event logits) from audio."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher = load_captioner(args.teacher).float().eval()
    dims = type(teacher.dims).from_dict({**teacher.dims.to_dict(), "encoder_chunk_seconds": args.chunk_seconds,
                                         "encoder_chunk_layers": args.chunk_layers})
    student = Captioner(dims, teacher.tokenizer)
    student.load_state_dict(teacher.state_dict())
    features = _features(Path(args.data))
    source, samples = _scene_source(args.config, derive_seed(_TEACH_SEED, 0))
    per_shard = args.shard_size
    val_audio, val_labels, val_refs = _val_scenes(args.config, args.val_scenes)
    with torch.inference_mode():
        val_features = torch.cat([teacher.encode_audio(torch.from_numpy(val_audio[i : i + 32]))
                                  for i in range(0, len(val_audio), 32)])
    run = _Run(student, "encoder", args, warmup=50)
    scale = float(torch.from_numpy(features[:512]).float().square().mean())  # features' mean square

    def evaluate_and_keep() -> None:
        with run.ema_weights() as model:
            with torch.inference_mode():
                mine = torch.cat([model.encode_audio(torch.from_numpy(val_audio[i : i + 32]))
                                  for i in range(0, len(val_audio), 32)])
            error = float((mine - val_features).norm() / val_features.norm())
            metrics = {"relative_error": error, **_validate(model, val_audio, val_labels, args.val_steps)}
        logger.info(f"step {run.step}: val feature error {error:.3f}, event-F1 {metrics['event_f1']:.3f}, broken "
                    f"{metrics['broken']:.2f}, e.g. {metrics['examples'][0]!r} (reference {val_refs[0]!r})")
        run.record(metrics, metrics["event_f1"], {"encoder_distilled_from": str(args.teacher)})

    def loss() -> torch.Tensor:
        rows = run.rng.integers(len(features), size=args.batch)
        scenes = [source.scene(int(row) // per_shard, 0, int(row) % per_shard) for row in rows]
        audio = torch.from_numpy(np.stack([fit_samples(scene.audio, samples) for scene in scenes]))
        target = torch.from_numpy(features[rows]).float()
        mine = student.encode_audio(audio)
        total = (mine - target).square().mean() / scale
        if student.events is not None:  # the event head reads the same features: keep its view too
            with torch.no_grad():
                wanted = torch.sigmoid(teacher.events(target))
            total = total + F.binary_cross_entropy_with_logits(student.events(mine), wanted)
        return total

    run.train(loss, evaluate_and_keep)


def graft(args: argparse.Namespace) -> None:
    """A model's decoder on another checkpoint's encoder and event head (the distilled streaming
    encoder under the shipped DAC decoder or the AR twin's): dims of the encoder's side from it."""
    body, ears = load_captioner(args.decoder), load_captioner(args.encoder)
    encoder_fields = {k: v for k, v in ears.dims.to_dict().items() if k.startswith("encoder_") or k in
                      ("n_mels", "n_fft", "hop_length", "sample_rate", "max_audio_seconds", "event_classes")}
    dims = type(body.dims).from_dict({**body.dims.to_dict(), **encoder_fields})
    model = Captioner(dims, body.tokenizer)
    model.decoder.load_state_dict(body.decoder.state_dict())
    model.encoder.load_state_dict(ears.encoder.state_dict())
    if model.events is not None and ears.events is not None:
        model.events.load_state_dict(ears.events.state_dict())
    metadata = json.loads((Path(args.decoder) / "config.json").read_text()).get("metadata", {})
    save_captioner(model, args.out, {**metadata, "encoder_from": str(args.encoder)})
    logger.info(f"{args.out}: decoder of {args.decoder}, encoder of {args.encoder}")


def half(args: argparse.Namespace) -> None:
    """The checkpoint as shipped: the same model, weights stored as fp16 (loaded into fp32)."""
    model = load_captioner(args.model)
    config = json.loads((Path(args.model) / "config.json").read_text())
    save_captioner(model.half(), args.out, config.get("metadata", {}))
    logger.info(f"{args.out}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters as fp16")


def _training_arguments(parser: argparse.ArgumentParser, steps: int, batch: int, lr: float, ema: float, every: int,
                        minutes: float) -> None:
    """The options every training step (train, sampler, stream) reads through ``_Run``, with its defaults."""
    parser.add_argument("--config", default="configs/finetune-ar-tiny-cpu.yaml")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--ema", type=float, default=ema)
    parser.add_argument("--every", type=int, default=every)
    parser.add_argument("--val-scenes", type=int, default=128)
    parser.add_argument("--max-minutes", type=float, default=minutes)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("teach")
    t.add_argument("--teacher", required=True)
    t.add_argument("--config", default="configs/finetune-ar-tiny-cpu.yaml")
    t.add_argument("--scenes", type=int, default=16384)
    t.add_argument("--shard-size", type=int, default=512)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--beam", type=int, default=5)
    t.add_argument("--guidance", type=float, default=DecodingOptions.event_guidance,
                   help="the teacher's event guidance (its product default; 0: unsteered, as in stage 5)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--part", type=int, default=0, help="this process writes shards i with i %% parts == part")
    t.add_argument("--parts", type=int, default=1)
    t.add_argument("--features-only", action="store_true",
                   help="no beam captions or chosen references (empty strings): shards for sampler and stream only")
    t.add_argument("--out", required=True)
    s = sub.add_parser("train")
    s.add_argument("--teacher", required=True)
    s.add_argument("--student", default="edge_dac/assets/model")
    _training_arguments(s, steps=20000, batch=64, lr=5e-4, ema=0.998, every=500, minutes=60)
    s.add_argument("--target", choices=("reference", "beam", "family"), default="family",
                   help="the five references under their families' codes, the most likely one, or the beam caption")
    s.add_argument("--shard-size", type=int, default=512)
    s.add_argument("--reset-ema", action="store_true", help="on resuming, restart the EMA from the weights")
    s.add_argument("--val-steps", type=int, default=6)
    s.add_argument("--val-candidates", type=int, default=1, metavar="K",
                   help="validate K=1 raw captions (default) or the best of K as the product decodes them")
    s.add_argument("--event-memory", action="store_true",
                   help="the denoiser also reads the event head's frame probabilities (ModelDims.event_memory)")
    s.add_argument("--sampler-steps", type=int, default=0, metavar="N",
                   help="train the N-step sampler's path on the targets (stage 11) instead of the denoising loss")
    s.add_argument("--guidance", type=float, default=DecodingOptions.event_guidance,
                   help="the event guidance the sampler path is trained under (as the product decodes)")
    q = sub.add_parser("sampler-teach")
    q.add_argument("--teacher", default="edge_dac/assets/model")
    q.add_argument("--teacher-steps", type=int, default=10)
    q.add_argument("--data", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--draw", type=int, default=0)
    q.add_argument("--batch", type=int, default=128)
    q.add_argument("--threads", type=int, default=1)
    r = sub.add_parser("sampler")
    r.add_argument("--teacher", default="edge_dac/assets/model")
    r.add_argument("--steps-to", type=int, default=2, help="sampler steps the student decodes in")
    r.add_argument("--online-teacher-steps", type=int, default=0, metavar="T",
                   help="the teacher samples each batch's targets in T steps from fresh noise (no stored draws)")
    r.add_argument("--val-candidates", type=int, default=1, metavar="K",
                   help="validate K=1 raw captions (default) or the best of K as the product decodes them")
    r.add_argument("--guidance", type=float, default=DecodingOptions.event_guidance,
                   help="online: the event guidance teacher and student decode under (as the product decodes)")
    _training_arguments(r, steps=3000, batch=64, lr=2e-4, ema=0.998, every=250, minutes=90)
    e = sub.add_parser("stream")
    e.add_argument("--teacher", default="edge_dac/assets/model")
    e.add_argument("--chunk-seconds", type=float, default=2.0)
    e.add_argument("--chunk-layers", type=int, default=2)
    e.add_argument("--shard-size", type=int, default=512)
    e.add_argument("--val-steps", type=int, default=10)
    _training_arguments(e, steps=2000, batch=32, lr=3e-4, ema=0.995, every=100, minutes=60)
    g = sub.add_parser("graft")
    g.add_argument("--decoder", required=True)
    g.add_argument("--encoder", required=True)
    g.add_argument("--out", required=True)
    h = sub.add_parser("half")
    h.add_argument("--model", required=True)
    h.add_argument("--out", required=True)
    args = parser.parse_args()
    {"teach": teach, "train": train, "sampler-teach": sampler_teach, "sampler": sampler,
     "stream": stream, "graft": graft, "half": half}[args.command](args)


if __name__ == "__main__":
    main()
