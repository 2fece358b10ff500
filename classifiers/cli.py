"""`zyda classifier train`: a fastText quality classifier from positive and negative documents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classifiers.train import TrainOptions


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    classifier = subparsers.add_parser("classifier", help="train quality classifiers for the classify stage")
    actions = classifier.add_subparsers(dest="classifier_command", required=True)
    train = actions.add_parser(
        "train", help="train a fastText classifier (bigrams) with a held-out evaluation and a JSON card",
        description="Inputs are Parquet or JSON lines files, folders of them (e.g. WORKDIR/<stage>/<source>) "
                    "or globs; local or fsspec URLs.")
    defaults = TrainOptions()
    train.add_argument("--positive", nargs="+", required=True, help="high-quality documents")
    train.add_argument("--negative", nargs="+", required=True, help="low-quality documents")
    train.add_argument("--output", required=True, type=Path, help="model file, e.g. models/quality.bin")
    train.add_argument("--text-field", default="text")
    train.add_argument("--limit", type=int, default=None, help="read at most N documents per set")
    train.add_argument("--holdout", type=float, default=defaults.holdout, help="share held out for evaluation")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--epoch", type=int, default=defaults.epoch)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--dim", type=int, default=defaults.dim)
    train.add_argument("--word-ngrams", type=int, default=defaults.word_ngrams)
    train.add_argument("--min-count", type=int, default=defaults.min_count)
    train.add_argument("--bucket", type=int, default=defaults.bucket, help="hash buckets for n-grams (model size)")
    train.add_argument("--threads", type=int, default=defaults.threads, help="more than 1 is not deterministic")
    train.add_argument("--max-chars", type=int, default=None, help="train on the first N characters only")
    train.add_argument("--positive-label", default=defaults.positive_label)
    train.add_argument("--negative-label", default=defaults.negative_label)
    train.add_argument("--threshold", type=float, default=defaults.threshold, help="for precision/recall/F1")
    train.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from classifiers.textsets import TextSetError
    from classifiers.train import train_classifier

    options = TrainOptions(epoch=args.epoch, lr=args.lr, dim=args.dim, word_ngrams=args.word_ngrams,
                           min_count=args.min_count, bucket=args.bucket, threads=args.threads, seed=args.seed,
                           holdout=args.holdout, max_chars=args.max_chars, positive_label=args.positive_label,
                           negative_label=args.negative_label, threshold=args.threshold)
    try:
        result = train_classifier(args.positive, args.negative, args.output, options, args.text_field, args.limit)
    except TextSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    docs = result.card["data"]["documents"]
    print(f"trained on {docs['positive']['train']} positive + {docs['negative']['train']} negative documents, "
          f"held out {docs['positive']['heldout']} + {docs['negative']['heldout']}")
    metrics = result.card["heldout_metrics"]
    if metrics:
        print(f"held-out: precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}  "
              f"F1 {metrics['f1']:.4f}  ROC AUC {metrics['roc_auc']:.4f}  (threshold {metrics['threshold']})")
    print(f"model: {result.model_path}  sha256 {result.card['sha256']}")
    print(f"card:  {result.card_path}")
    return 0
