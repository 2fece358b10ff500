"""Hugging Face sequence classifiers: NeMo's quality DeBERTa, FineWeb-Edu's regression head, any
`AutoModelForSequenceClassification`, with length-sorted batching on CPU or GPU.

`nvidia/quality-classifier-deberta` is not a transformers model: it is a `PyTorchModelHubMixin`
module whose config.json holds `base_model` (microsoft/deberta-v3-base), `fc_dropout` and
`id2label`, and whose forward is encoder -> dropout -> linear -> softmax of the first token
(its model card). `QualityModel` has exactly that layout, so its model.safetensors loads with the
mixin's own `from_pretrained`; the encoder is built from the base model's *config* only (its
weights are in model.safetensors), so no second checkpoint is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pyarrow as pa
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from classifiers.batching import make_batches, padding_fraction
from pipeline.stage import StageError

HFKind = Literal["nemo_quality", "fineweb_edu", "hf_sequence"]
WEIGHTS = "model.safetensors"
NEMO_KEYS = ("base_model", "fc_dropout", "id2label")
CHARS_PER_TOKEN_CAP = 32
"""Default character cut when a recipe gives none: no realistic token spans 32 characters, so
cutting at max_tokens * 32 never changes what the model sees, while a 10 MB document never
reaches the tokenizer whole."""


class QualityModel(nn.Module, PyTorchModelHubMixin):
    """NeMo Curator's DeBERTa classifier head (quality, domain...): softmax over the first token."""

    def __init__(self, config: dict):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        self.model = AutoModel.from_config(AutoConfig.from_pretrained(config["base_model"]))
        self.dropout = nn.Dropout(config["fc_dropout"])
        self.fc = nn.Linear(self.model.config.hidden_size, len(config["id2label"]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        outputs = self.fc(self.dropout(features))
        return torch.softmax(outputs[:, 0, :].float(), dim=1)


def _label_list(id2label: dict[Any, str]) -> list[str]:
    return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]


@dataclass(frozen=True)
class ModelInfo:
    """What the driver learns about a model folder without loading its weights."""

    labels: tuple[str, ...]
    """Label names by class index; empty for a regression head."""
    regression: bool
    max_positions: int | None
    """Longest input in tokens; None for relative-position encoders (DeBERTa-v3)."""


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise StageError(f"model folder {path.parent} has no {path.name}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageError(f"{path} is not valid JSON (corrupt model?): {exc}") from None
    if not isinstance(data, dict):
        raise StageError(f"{path}: expected a JSON object")
    return data


def _file_tensor_names(weights: Path) -> set[str]:
    """Tensor names of a safetensors file, after checking its header and that all its data is there."""
    if not weights.is_file():
        raise StageError(f"model folder {weights.parent} has no {WEIGHTS} (only safetensors weights are loaded)")
    size = weights.stat().st_size
    try:
        with open(weights, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or header_len > size:
                raise ValueError(f"header length {header_len} does not fit a {size}-byte file")
            header = json.loads(handle.read(header_len))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise StageError(f"{weights} is not a readable safetensors file (corrupt?): {exc}") from None
    if size < 8 + header_len + end:
        raise StageError(f"{weights} is truncated: its header needs {8 + header_len + end} bytes, the file has {size}")
    return set(tensors)


def _expected_names(kind: HFKind, folder: Path) -> set[str]:
    """Parameter names the model will have, from a weightless (meta device) instance."""
    with torch.device("meta"):
        if kind == "nemo_quality":
            model = QualityModel(_read_json(folder / "config.json"))
        else:
            from transformers import AutoConfig, AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
    return {name for name, _ in model.named_parameters()}


def inspect_model(kind: HFKind, folder: Path) -> ModelInfo:
    """Validate a model folder on the driver (config, base model, weights present, tokenizer)."""
    config = _read_json(folder / "config.json")
    if kind == "nemo_quality":
        missing = [k for k in NEMO_KEYS if k not in config]
        if missing:
            raise StageError(f"{folder}/config.json lacks {missing}: not a NeMo-style classifier "
                             f"(expected base_model, fc_dropout, id2label)")
        labels, regression = _label_list(config["id2label"]), False
        try:
            from transformers import AutoConfig

            base = AutoConfig.from_pretrained(config["base_model"])
        except Exception as exc:
            raise StageError(f"{folder}: the config of its base_model {config['base_model']!r} cannot be loaded: "
                             f"{exc}") from None
        max_positions = None if not getattr(base, "position_biased_input", True) else base.max_position_embeddings
    else:
        try:
            from transformers import AutoConfig

            hf_config = AutoConfig.from_pretrained(folder)
        except Exception as exc:
            raise StageError(f"{folder}/config.json is not a transformers config: {exc}") from None
        regression = hf_config.num_labels == 1
        labels = [] if regression else _label_list(hf_config.id2label)
        max_positions = getattr(hf_config, "max_position_embeddings", None)
        if kind == "fineweb_edu" and not regression:
            raise StageError(f"{folder}: a FineWeb-Edu classifier has one regression output, "
                             f"this model has {hf_config.num_labels} labels")
    absent = _expected_names(kind, folder) - _file_tensor_names(folder / WEIGHTS)
    if absent:
        raise StageError(f"{folder}/{WEIGHTS} lacks {len(absent)} weights the model needs, "
                         f"e.g. {sorted(absent)[:3]}: wrong model kind for this checkpoint?")
    load_tokenizer(folder, config)
    return ModelInfo(tuple(labels), regression, max_positions)


def load_tokenizer(folder: Path, config: dict[str, Any]):
    """The classifier folder's tokenizer; NeMo-style folders without one use the base model's."""
    from transformers import AutoTokenizer

    has_own = any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "spm.model"))
    source = folder if has_own or "base_model" not in config else config["base_model"]
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise StageError(f"{folder}: the tokenizer cannot be loaded from {source}: {exc}") from None


def resolve_precision(device: str, dtype: str) -> tuple[str, torch.dtype]:
    """`auto`: a GPU when this process sees one (bf16 where supported, else fp16), else CPU fp32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise StageError("device: cuda was asked for, but this worker sees no GPU")
    if dtype == "auto":
        if device == "cpu":
            return device, torch.float32
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, getattr(torch, dtype)


class TransformerScorer:
    """One loaded classifier: truncates, tokenizes, batches by length, and returns score columns."""

    def __init__(self, kind: HFKind, folder: Path, max_chars: int | None, max_tokens: int, batch_size: int,
                 device: str = "auto", dtype: str = "auto", sort_by_length: bool = True):
        self.kind, self.batch_size, self.sort_by_length = kind, batch_size, sort_by_length
        self.max_tokens = max_tokens
        self.max_chars = max_chars if max_chars is not None else max_tokens * CHARS_PER_TOKEN_CAP
        self.device, self.dtype = resolve_precision(device, dtype)
        # fp16 runs under autocast with fp32 weights (NeMo's choice: DeBERTa's activations can
        # overflow fp16); bf16 has fp32's range, so the weights themselves are cast.
        self.autocast = self.device == "cuda" and self.dtype == torch.float16
        config = _read_json(folder / "config.json")
        self.tokenizer = load_tokenizer(folder, config)
        self.model, self.labels = self._load(folder, config)
        self.model.to(device=self.device, dtype=torch.float32 if self.autocast else self.dtype).eval()
        self.calls = 0
        self.last_padding_fraction = 0.0

    def _load(self, folder: Path, config: dict[str, Any]) -> tuple[nn.Module, list[str]]:
        if self.kind == "nemo_quality":
            # Not strict: older checkpoints carry buffers (position_ids) newer encoders no longer
            # keep; missing weights were ruled out on the driver (`inspect_model`).
            with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints "Loading weights from ..."
                model = QualityModel.from_pretrained(str(folder), map_location="cpu", strict=False)
            return model, _label_list(config["id2label"])
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per actor and model load is noise in run logs
        model, info = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
        if info.get("missing_keys"):
            raise StageError(f"{folder}: weights missing from the checkpoint: {sorted(info['missing_keys'])[:3]}")
        return model, ([] if model.config.num_labels == 1 else _label_list(model.config.id2label))

    def tokenize(self, texts: Sequence[str | None]) -> list[list[int]]:
        """Cut each text to max_chars first (never a whole 10 MB document), then to max_tokens."""
        cut = [(t or "")[:self.max_chars] for t in texts]
        return self.tokenizer(cut, truncation=True, max_length=self.max_tokens)["input_ids"]

    @torch.inference_mode()
    def forward(self, ids: list[list[int]]) -> np.ndarray:
        """Model outputs (probabilities, or the regression value) per document, in the given order."""
        batch = self.tokenizer.pad({"input_ids": ids}, padding="longest", return_tensors="pt")
        input_ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        self.calls += 1
        with torch.autocast("cuda", dtype=torch.float16) if self.autocast else contextlib.nullcontext():
            if self.kind == "nemo_quality":
                return self.model(input_ids, mask).float().cpu().numpy()
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        if self.model.config.num_labels == 1:
            return logits[:, 0].cpu().numpy()
        if self.model.config.problem_type == "multi_label_classification":
            return torch.sigmoid(logits).cpu().numpy()
        return torch.softmax(logits, dim=1).cpu().numpy()

    def outputs(self, texts: Sequence[str | None]) -> np.ndarray:
        """Raw outputs for all texts in arrival order, computed in length-sorted batches."""
        ids = self.tokenize(texts)
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        batches = make_batches(lengths, self.batch_size, self.sort_by_length)
        self.last_padding_fraction = padding_fraction(lengths, batches)
        width = () if not self.labels else (len(self.labels),)
        result = np.zeros((len(ids),) + width, dtype=np.float32)
        for rows in batches:
            result[rows] = self.forward([ids[i] for i in rows])
        return result

    def score(self, texts: Sequence[str | None]) -> dict[str, pa.Array]:
        """Output columns by role: `pred` + `prob` (classifiers), `score` (+ `int_score` for FineWeb-Edu)."""
        out = self.outputs(texts)
        if not self.labels:
            columns = {"score": pa.array(out.astype(np.float64), pa.float64())}
            if self.kind == "fineweb_edu":
                columns["int_score"] = pa.array([int(round(min(max(float(s), 0.0), 5.0))) for s in out], pa.int64())
            return columns
        names = np.array(self.labels, dtype=object)
        pred = names[out.argmax(axis=1)] if len(out) else np.array([], dtype=object)
        prob = pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1), pa.float32()), len(self.labels))
        return {"pred": pa.array(pred.tolist(), pa.string()), "prob": prob.cast(pa.list_(pa.float32()))}
