"""The `train` command's options: the arguments that name a recipe's settings on the command line, and the checked
TrainConfig they ask for. A study passes the same options to each seed's `train`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from engine.training.config import OPTIMIZERS, REASON_BALANCES, TrainConfig
from engine.training.presets import PRESETS, preset


def add_train_options(train: argparse.ArgumentParser) -> None:
    """`train`'s options: the run's folder, the recipe, and any of its settings to change."""
    train.add_argument("--out", type=Path, required=True, help="a new or empty folder for the run")
    train.add_argument("--replace", action="store_true", help="delete the run already in --out first")
    train.add_argument("--preset", default="default", choices=sorted(PRESETS))
    train.add_argument("--seed", type=int, help="starting weights and the order claims are drawn in")
    train.add_argument("--data-seed", type=int, help="which claims are generated (default 0, as in the app)")
    train.add_argument("--steps", type=int)
    train.add_argument("--target-accuracy", type=float)
    train.add_argument("--max-seconds", type=float)
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--lr", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--weight-decay", type=float, help="Adam's decoupled weight decay (default 0: none)")
    train.add_argument(
        "--reason-balance",
        choices=REASON_BALANCES,
        help="how training batches are drawn: 'generated' (default: half valid, an eighth per reason) "
        "or 'even' (valid and each reason a fifth)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files into the run's folder (tensorboard --logdir runs/)",
    )
    train.add_argument(
        "--threads",
        type=int,
        help="intra-op threads (default 1: the same seed repeats the run exactly); 0 measures 1 vs 2 "
        "as it trains, faster on an idle machine but not repeatable",
    )
    _add_model_options(train)


def _add_model_options(train: argparse.ArgumentParser) -> None:
    train.add_argument(
        "--no-nothing-slot",
        action="store_true",
        help='heads get no "nothing" slot to look at (the recipe gives every head one)',
    )
    train.add_argument(
        "--sparse-attention",
        action="store_true",
        help="heads weigh words with entmax 1.5 instead of softmax, so a word can get exactly zero",
    )
    train.add_argument(
        "--cross-value-dim",
        type=int,
        help="width of each cross-attention head's values and output (default: d_model / heads)",
    )
    train.add_argument(
        "--cross-head-gate",
        action="store_true",
        help="a sigmoid gate on each cross-attention head's output, from the decoder's input",
    )
    train.add_argument(
        "--sparse-encoder", action="store_true", help="the encoder's heads alone weigh words with entmax 1.5"
    )
    train.add_argument(
        "--cross-learned-alpha",
        action="store_true",
        help="each cross-attention head learns its own entmax alpha in (1, 2], starting at 1.5",
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe `train` was asked for, with the options given on the command line, checked."""
    config = preset(args.preset)
    asked = {
        "seed": args.seed,
        "data_seed": args.data_seed,
        "steps": args.steps,
        "target_accuracy": args.target_accuracy,
        "max_seconds": args.max_seconds,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "weight_decay": args.weight_decay,
        "reason_balance": args.reason_balance,
    }
    model = config.model
    model = replace(
        model,
        null_key=model.null_key and not args.no_nothing_slot,
        sparse_attention=model.sparse_attention or args.sparse_attention,
        cross_head_gate=model.cross_head_gate or args.cross_head_gate,
        sparse_encoder=model.sparse_encoder or args.sparse_encoder,
        cross_learned_alpha=model.cross_learned_alpha or args.cross_learned_alpha,
        cross_value_dim=model.cross_value_dim if args.cross_value_dim is None else args.cross_value_dim,
    )
    config = replace(
        config,
        **{name: value for name, value in asked.items() if value is not None},
        tensorboard=args.tensorboard,
        model=model,
    )
    config.validate()
    return config
