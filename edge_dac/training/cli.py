"""``edge-dac train``: train a captioner (or pretrain its encoder), resume, or finetune."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a captioner (DAC or AR), pretrain its encoder, or finetune a checkpoint",
        description="Train as a YAML config says (configs/train-*.yaml; every key documented in docs/training.md). "
        "Several processes or nodes: start it with torchrun, e.g. `torchrun --nproc_per_node=4 -m edge_dac train "
        "--config ...`. Finetuning: `edge-dac train --init CHECKPOINT --data my_manifest.csv`.",
    )
    train.add_argument("--config", metavar="YAML", help="training config (default: the built-in defaults)")
    train.add_argument("--out", metavar="DIR", default="runs/train", help="run directory (default runs/train)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    train.add_argument("--init", metavar="DIR", help="finetune this checkpoint (its dims and tokenizer are kept)")
    train.add_argument("--data", metavar="MANIFEST", help="train on this manifest instead of mixed scenes")
    train.add_argument("--val-data", metavar="MANIFEST", help="validate on this manifest (default: its val items)")
    train.add_argument("--steps", type=int, metavar="N", help="override optim.steps")
    train.add_argument(
        "--max-minutes",
        type=float,
        metavar="M",
        help="stop (validated, checkpointed) after M minutes; --resume goes on",
    )
    train.add_argument("--grow-vocab", action="store_true", help="finetuning: add caption words the tokenizer lacks")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from edge_dac.errors import ConfigError
    from edge_dac.training.config import load_train_config
    from edge_dac.training.train import train

    config = load_train_config(args.config)
    updates: dict = {}
    if args.data:
        updates["manifest"] = args.data
    if args.val_data:
        updates["val_manifest"] = args.val_data
    if updates:
        config.data = config.data.model_copy(update=updates)
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {args.steps}")
        config.optim = config.optim.model_copy(update={"steps": args.steps})
    result = train(
        config,
        args.out,
        resume=args.resume,
        init=args.init,
        grow_vocab=args.grow_vocab,
        progress=not args.no_progress,
        max_minutes=args.max_minutes,
    )
    best = (
        f"; best validation score {result.best_score:.3f} in {result.out / 'best'}"
        if result.best_score is not None
        else ""
    )
    print(f"trained to step {result.step}: checkpoints in {result.out / 'checkpoints'}{best}")
    return 0
