"""Train a fastText quality classifier from positive and negative documents, DCLM style.

Documents become one line each (newlines joined to spaces, as the scorer sees them) with
`__label__<positive>` / `__label__<negative>`; a stratified, seeded held-out share is kept out of
training and scored afterwards (precision, recall, F1 at 0.5, ROC AUC). Word bigrams
(`wordNgrams=2`) by default, as DCLM's classifier. With one thread and a seed, fastText's SGD is
deterministic: the same data and options give the same model bytes. The model is written with
a JSON card beside it (`<name>.card.json`: data, parameters, metrics, sha256).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from classifiers.fasttext_scorer import LABEL_PREFIX, preprocess
from classifiers.locate import sha256_file
from classifiers.metrics import binary_metrics
from classifiers.textsets import TextSetError, read_texts

MIN_DOCS_PER_CLASS = 2
_M_PERTURB = -6  # glibc mallopt parameter


@contextlib.contextmanager
def zero_filled_allocations():
    """Make malloc return zero-filled memory while fastText trains.

    The fasttext-numpy2-wheel build stores matrices in uninitialised aligned buffers, and its
    `uniform` initialiser fills only `thread` tenths of the input matrix (upstream fastText
    zero-fills the rest through std::vector). With one thread the other 90% is whatever the heap
    held: training then depends on the process's history and can diverge ("Encountered NaN").
    glibc's M_PERTURB with 0xFF fills every new allocation with 0x00, which restores upstream's
    zeros, so training is deterministic again. A no-op where mallopt does not exist.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        yield
        return
    mallopt(_M_PERTURB, 0xFF)
    try:
        yield
    finally:
        mallopt(_M_PERTURB, 0)


@dataclass(frozen=True)
class TrainOptions:
    """fastText's supervised options (its defaults except wordNgrams=2) plus the split."""

    epoch: int = 5
    lr: float = 0.1
    dim: int = 100
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 2_000_000
    loss: str = "softmax"
    threads: int = 1
    seed: int = 0
    holdout: float = 0.1
    max_chars: int | None = None
    positive_label: str = "hq"
    negative_label: str = "lq"
    threshold: float = 0.5


@dataclass
class TrainResult:
    model_path: Path
    card_path: Path
    card: dict = field(default_factory=dict)


def card_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".card.json")


def split(count: int, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) indices; at least one of each when there are two or more documents."""
    order = rng.permutation(count)
    held = min(max(int(round(count * holdout)), 1 if holdout > 0 else 0), count - 1)
    return np.sort(order[held:]), np.sort(order[:held])


def _clean(texts: list[str], max_chars: int | None) -> list[str]:
    """Scorer preprocessing; a `__label__` inside a text would be read as a label, so it goes."""
    lines = [preprocess(t, max_chars).replace(LABEL_PREFIX, " ").strip() for t in texts]
    return [line for line in lines if line]


def train_classifier(positive: list[str], negative: list[str], output: Path, options: TrainOptions = TrainOptions(),
                     text_field: str = "text", limit: int | None = None) -> TrainResult:
    """Read both sets, split, train, evaluate, write model + card. Raises TextSetError on bad input."""
    import fasttext

    if not 0 <= options.holdout < 1:
        raise TextSetError(f"holdout must be in [0, 1), got {options.holdout}")
    if options.positive_label == options.negative_label:
        raise TextSetError("the positive and negative labels must differ")
    raw = {"positive": read_texts(positive, text_field, limit), "negative": read_texts(negative, text_field, limit)}
    docs = {name: _clean(texts, options.max_chars) for name, texts in raw.items()}
    for name, lines in docs.items():
        if len(lines) < MIN_DOCS_PER_CLASS:
            raise TextSetError(f"the {name} set has {len(lines)} non-empty documents; at least "
                               f"{MIN_DOCS_PER_CLASS} are needed")
    labels = {"positive": LABEL_PREFIX + options.positive_label, "negative": LABEL_PREFIX + options.negative_label}
    rng = np.random.default_rng(options.seed)
    train_lines: list[str] = []
    held_texts: list[str] = []
    held_truth: list[bool] = []
    counts = {}
    for name in ("positive", "negative"):
        train_idx, held_idx = split(len(docs[name]), options.holdout, rng)
        train_lines += [f"{labels[name]} {docs[name][i]}" for i in train_idx]
        held_texts += [docs[name][i] for i in held_idx]
        held_truth += [name == "positive"] * len(held_idx)
        counts[name] = {"read": len(raw[name]), "empty_skipped": len(raw[name]) - len(docs[name]),
                        "train": len(train_idx), "heldout": len(held_idx)}
    train_lines = [train_lines[i] for i in rng.permutation(len(train_lines))]

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=output.parent, delete=False, encoding="utf-8") as tmp:
        tmp.write("\n".join(train_lines) + "\n")
    try:
        with zero_filled_allocations():
            model = fasttext.train_supervised(
                input=tmp.name, epoch=options.epoch, lr=options.lr, dim=options.dim, wordNgrams=options.word_ngrams,
                minCount=options.min_count, bucket=options.bucket, loss=options.loss, thread=options.threads,
                seed=options.seed, verbose=0)
    except RuntimeError as exc:  # fastText's "Encountered NaN": the SGD diverged
        raise TextSetError(f"fastText training failed ({exc}); try a lower --lr") from None
    finally:
        os.unlink(tmp.name)
    model_tmp = output.with_name(f".tmp-{output.name}")
    model.save_model(str(model_tmp))
    os.replace(model_tmp, output)

    metrics = None
    if held_texts:
        scores = _positive_probability(model, held_texts, labels["positive"])
        metrics = binary_metrics(np.array(held_truth), scores, options.threshold)
    card = {
        "kind": "fasttext", "model": output.name, "sha256": sha256_file(output), "bytes": output.stat().st_size,
        "labels": {"positive": labels["positive"], "negative": labels["negative"]},
        "data": {"positive": positive, "negative": negative, "text_field": text_field, "limit": limit,
                 "documents": counts, "preprocessing": "newlines joined to spaces"
                 + (f", first {options.max_chars} characters" if options.max_chars else "")},
        "parameters": asdict(options), "fasttext": _fasttext_version(),
        "deterministic": options.threads == 1,
        "heldout_metrics": metrics,
        "usage": {"model": {"kind": "fasttext", "path": str(output), "label": options.positive_label}},
    }
    card_path = card_path_for(output)
    card_tmp = card_path.with_name(f".tmp-{card_path.name}")
    card_tmp.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    os.replace(card_tmp, card_path)
    return TrainResult(output, card_path, card)


def _positive_probability(model, texts: list[str], label: str) -> np.ndarray:
    labels, probs = model.predict(texts, k=-1)
    return np.array([dict(zip(row_labels, row_probs)).get(label, 0.0) for row_labels, row_probs in zip(labels, probs)],
                    dtype=np.float64)


def _fasttext_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "fasttext-numpy2-wheel " + version("fasttext-numpy2-wheel")
    except PackageNotFoundError:
        return "fasttext"


SAMPLE_MODEL = Path("models") / "quality_fasttext.bin"
SAMPLE_OPTIONS = TrainOptions(dim=32, bucket=100_000, epoch=20)
"""The demo's classifier, as `make demo` trains it (keep in step with the Makefile's flags)."""


def train_sample_classifier(sample_dir: Path) -> TrainResult:
    """Train the model manifests/sample.yaml uses from a built sample's classifier_train/ sets
    (for tests and scripts that run the sample recipe past ingest without `make demo`)."""
    sets = sample_dir / "classifier_train"
    return train_classifier([str(sets / "positive.jsonl")], [str(sets / "negative.jsonl")],
                            sample_dir / SAMPLE_MODEL, SAMPLE_OPTIONS)
