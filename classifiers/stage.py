"""The `classify` stage: score every document with a model, store the scores, apply a keep rule.

Scores are columns on every document, kept or dropped (dropped ones go to `removed/` with the
rule that dropped them), so a threshold can be changed later without rescoring: with
`reuse_scores` (the default) each task also writes its scores to
`WORKDIR/_cache/classify/<scorer>/<source>/`, keyed by the model's sha256, the scoring settings
and the input partition, and a rerun whose scorer and input are unchanged (say, only `keep`
changed, run with --force) reads them instead of calling the model.

The model is located and checked on the driver before any task (missing file, truncated or
corrupt weights, keep-rule labels the model lacks); its sha256 is part of the config hash. Each
Ray actor loads it once, on the first batch that needs scoring (a fully cached rerun never loads
it), on a GPU in fp16/bf16 when the actor has one.

Recipe example (zyda2):
    - id: quality
      type: classify
      sources: [zyda, dolma_cc]
      params:
        model: {kind: nemo_quality, path: nvidia/quality-classifier-deberta}
        keep: {labels: [High]}
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from classifiers.keep import KeepRule
from classifiers.locate import local_model_file, local_model_folder, sha256_file, sha256_folder
from pipeline.stage import BatchDecision, DocumentStage, StageContext, StageError, Task, TaskResult

log = logging.getLogger("zyda")

ModelKind = Literal["fasttext", "nemo_quality", "fineweb_edu", "hf_sequence"]
ROLES: dict[str, dict[str, str]] = {
    "fasttext": {"score": "fasttext_score", "pred": "fasttext_pred"},
    "nemo_quality": {"pred": "quality_pred", "prob": "quality_prob"},
    "fineweb_edu": {"score": "score", "int_score": "int_score"},
    "hf_sequence": {"pred": "classifier_pred", "prob": "classifier_prob", "score": "classifier_score"},
}
"""Output columns by role and their default names (`quality_pred`/`quality_prob` as published in
Zyda-2, `score`/`int_score` as in FineWeb-Edu)."""
ROLE_TYPES = {"score": pa.float64(), "int_score": pa.int64(), "pred": pa.string(), "prob": pa.list_(pa.float32())}
SCALAR_ROLES = ("score", "int_score")
DEFAULT_TRUNCATION: dict[str, tuple[int | None, int | None]] = {
    "fasttext": (None, None), "nemo_quality": (6000, 1024), "fineweb_edu": (None, 512), "hf_sequence": (None, 512)}
"""(max_chars, max_tokens) when the recipe gives none: NeMo's 6000 characters / 1024 tokens for
the quality DeBERTa, FineWeb-Edu's 512 tokens; fastText sees the whole text, as in DCLM."""
CACHE_DIR = "_cache"


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ModelKind
    path: str = Field(description="local path, hf://owner/repo[@rev][/file], owner/repo or a URL; "
                                  "${VAR:-default} is expanded")
    label: str = Field(default="hq", description="fastText: the label whose probability is the score")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$",
                               description="refuse a model whose bytes hash differently")


class ClassifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSpec
    max_chars: int | None = Field(default=None, ge=1, description="characters given to the model")
    max_tokens: int | None = Field(default=None, ge=1, description="tokens given to a transformer")
    batch_size: int = Field(default=32, ge=1, description="documents per transformer forward pass")
    sort_by_length: bool = Field(default=True, description="batch similar lengths together (less padding)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    num_cpus: float = Field(default=1, gt=0, description="CPUs per actor")
    num_gpus: float = Field(default=1, gt=0, description="GPUs per actor when GPUs are used")
    columns: dict[str, str] = Field(default_factory=dict, description="output column name by role")
    keep: KeepRule | None = Field(default=None, description="none: score only")
    keep_by_source: dict[str, KeepRule | None] = Field(default_factory=dict,
                                                       description="per-source rule replacing `keep`")
    reuse_scores: bool = Field(default=True, description="cache scores; a rerun with the same scorer reuses them")

    @model_validator(mode="after")
    def _fits_kind(self) -> "ClassifyParams":
        kind = self.model.kind
        unknown = sorted(set(self.columns) - set(ROLES[kind]))
        if unknown:
            raise ValueError(f"columns: {unknown} are not outputs of a {kind} model; roles are {sorted(ROLES[kind])}")
        names = [self.column(role) for role in ROLES[kind]]
        if len(set(names)) != len(names):
            raise ValueError(f"columns: two outputs would share a name: {names}")
        if kind == "fasttext" and self.max_tokens is not None:
            raise ValueError("max_tokens applies to transformer models; fastText takes max_chars")
        return self

    def column(self, role: str) -> str:
        return self.columns.get(role, ROLES[self.model.kind][role])

    def truncation(self) -> tuple[int | None, int | None]:
        chars, tokens = DEFAULT_TRUNCATION[self.model.kind]
        return (self.max_chars if self.max_chars is not None else chars,
                self.max_tokens if self.max_tokens is not None else tokens)


class ClassifyStage(DocumentStage):
    """Model-based quality classifier (fastText, NeMo DeBERTa, FineWeb-Edu, any HF classifier)."""

    type_name = "classify"
    Params = ClassifyParams
    uses_actors = True
    params: ClassifyParams

    def __init__(self, ctx: StageContext):
        super().__init__(ctx)
        self._sha256: str | None = None
        self._local: Path | None = None
        self._scorer: Any = None
        self._cached: pa.Table | None = None
        self._cache_offset = 0
        self._fresh: list[pa.Table] = []
        self._counts: Counter[str] = Counter()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_scorer=None, _local=None, _cached=None, _fresh=[])
        return state

    # ---- the model ---------------------------------------------------------------------------
    def _resolve(self) -> tuple[Path, str]:
        """Make the model local (download once) and hash it; check a pinned sha256."""
        spec = self.params.model
        if spec.kind == "fasttext":
            from classifiers.fasttext_file import check_fasttext_file

            path = local_model_file(spec.path)
            check_fasttext_file(path)
            digest = sha256_file(path)
        else:
            path = local_model_folder(spec.path)
            digest = sha256_folder(path)
        if spec.sha256 and digest != spec.sha256.lower():
            raise StageError(f"stage {self.stage_id}: model {path} has sha256 {digest}, the recipe pins {spec.sha256}")
        return path, digest

    def model_sha256(self) -> str:
        if self._sha256 is None:
            self._local, self._sha256 = self._resolve()
        return self._sha256

    def hash_extra(self) -> Any:
        try:
            return {"model_sha256": self.model_sha256()}
        except StageError:
            return {"model_unresolved": self.params.model.path}  # validate() reports why, before any task

    def _model_outputs(self, path: Path) -> tuple[tuple[str, ...], set[str], int | None]:
        """The model's label names, the roles it outputs and its longest input in tokens (None:
        no limit), learnt without loading weights."""
        kind = self.params.model.kind
        if kind == "fasttext":
            from classifiers.fasttext_file import check_fasttext_file
            from classifiers.fasttext_scorer import short_label

            return tuple(short_label(x) for x in check_fasttext_file(path).labels), {"score", "pred"}, None
        from classifiers.transformer import inspect_model

        info = inspect_model(kind, path)
        if info.regression:
            return (), ({"score", "int_score"} if kind == "fineweb_edu" else {"score"}), info.max_positions
        return info.labels, {"pred", "prob"}, info.max_positions

    def validate(self) -> None:
        where = f"stage {self.stage_id}"
        try:
            self.model_sha256()
        except StageError as exc:
            raise StageError(f"{where}: {exc}") from None
        assert self._local is not None
        path = self._local
        labels, roles, max_positions = self._model_outputs(path)
        max_tokens = self.params.truncation()[1]
        if max_positions is not None and max_tokens is not None and max_tokens > max_positions:
            raise StageError(f"{where}: max_tokens {max_tokens} exceeds the {max_positions} positions of model {path}")
        if self.params.model.kind == "fasttext":
            from classifiers.fasttext_scorer import short_label

            if short_label(self.params.model.label) not in labels:
                raise StageError(f"{where}: model {path} has no label {self.params.model.label!r} to score by; "
                                 f"its labels are {list(labels)}")
        extra = sorted(set(self.params.keep_by_source) - set(self.ctx.sources))
        if extra:
            raise StageError(f"{where}: keep_by_source names {extra}, which this stage does not process "
                             f"(its sources: {self.ctx.sources})")
        for source in self.ctx.sources:
            rule = self._rule(source)
            if rule is None:
                continue
            if rule.labels is not None:
                if "pred" not in roles:
                    raise StageError(f"{where}: keep.labels needs a model with labels; {path} is a regression model "
                                     f"(use min/max on {self.params.column('score')})")
                unknown = [x for x in rule.labels if x not in labels]
                if unknown:
                    raise StageError(f"{where}: keep labels {unknown} are not labels of model {path}; "
                                     f"its labels are {list(labels)}")
            else:
                scalar = {self.params.column(r): r for r in SCALAR_ROLES if r in roles}
                if not scalar:
                    raise StageError(f"{where}: a threshold needs a numeric score; model {path} outputs labels "
                                     f"(use keep.labels)")
                if rule.column is not None and rule.column not in scalar:
                    raise StageError(f"{where}: keep.column {rule.column!r} is not a score column of this model; "
                                     f"choose from {sorted(scalar)}")
        if self.params.device == "cuda" and not self._gpus_available():
            raise StageError(f"{where}: device: cuda, but no GPU is visible to this run")

    def _gpus_available(self) -> bool:
        import ray

        if ray.is_initialized():
            return ray.cluster_resources().get("GPU", 0) > 0
        import torch

        return torch.cuda.is_available()

    def resources(self) -> dict[str, float]:
        resources = {"num_cpus": self.params.num_cpus}
        if self.params.model.kind != "fasttext" and self.params.device != "cpu" and self._gpus_available():
            resources["num_gpus"] = self.params.num_gpus
        return resources

    def setup(self) -> None:
        """Make the model local on this node and check it is the one the driver hashed."""
        if self._local is not None:  # resolved in this process already (driver, local executor)
            return
        expected = self._sha256
        self._local, digest = self._resolve()
        if expected is not None and digest != expected:
            raise StageError(f"stage {self.stage_id}: model {self._local} on this worker has sha256 {digest}, "
                             f"the driver saw {expected}")
        self._sha256 = digest

    def _get_scorer(self) -> Any:
        if self._scorer is None:
            if self._local is None:
                self.setup()
            assert self._local is not None
            max_chars, max_tokens = self.params.truncation()
            kind = self.params.model.kind
            if kind == "fasttext":
                from classifiers.fasttext_scorer import FastTextScorer

                self._scorer = FastTextScorer(self._local, self.params.model.label, max_chars)
            else:
                import torch

                from classifiers.transformer import TransformerScorer

                # as many intra-op threads as the actor has CPUs: more only fight each other
                torch.set_num_threads(max(1, int(self.params.num_cpus)))
                self._scorer = TransformerScorer(kind, self._local, max_chars, max_tokens or 512,
                                                 self.params.batch_size, self.params.device, self.params.dtype,
                                                 self.params.sort_by_length)
        return self._scorer

    # ---- keep rules --------------------------------------------------------------------------
    def _rule(self, source: str) -> KeepRule | None:
        if source in self.params.keep_by_source:
            return self.params.keep_by_source[source]
        return self.params.keep

    def _rule_column(self, rule: KeepRule) -> str:
        if rule.labels is not None:
            return self.params.column("pred")
        if rule.column is not None:
            return rule.column
        return self.params.column("score")

    # ---- score cache -------------------------------------------------------------------------
    def _scorer_key(self) -> str:
        """Everything that decides the scores (not the keep rule, not the column names)."""
        max_chars, max_tokens = self.params.truncation()
        precision = "fasttext"
        if self.params.model.kind != "fasttext":
            from classifiers.transformer import resolve_precision

            device, dtype = resolve_precision(self.params.device, self.params.dtype)
            precision = f"{device}-{str(dtype).removeprefix('torch.')}"
        payload = {"sha256": self.model_sha256(), "kind": self.params.model.kind, "label": self.params.model.label,
                   "max_chars": max_chars, "max_tokens": max_tokens, "precision": precision}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def _cache_path(self, task: Task) -> str:
        assert task.source is not None
        inputs = "|".join(self.workdir.relative(p) for p in task.inputs)
        key = hashlib.sha256(f"{self.ctx.upstream_hash}|{inputs}".encode()).hexdigest()[:16]
        return self.workdir.path(CACHE_DIR, "classify", self._scorer_key(), task.source,
                                 f"{task.task_id}-{key}.parquet")

    def _read_cache(self, task: Task) -> pa.Table | None:
        """Cached scores of this task's input, if present and row for row the same documents."""
        path = self._cache_path(task)
        if not self.workdir.exists(path):
            return None
        cached = self.workdir.read_table(path)
        ids = pa.concat_tables([self.workdir.read_table(p, columns=["id"]) for p in task.inputs])["id"]
        if cached.num_rows != len(ids) or not cached["id"].equals(ids.cast(cached["id"].type)):
            log.warning("%s: cached scores %s do not match the input's ids; scoring again", self.stage_id, path)
            return None
        return cached

    # ---- the task ----------------------------------------------------------------------------
    def run_task(self, task: Task) -> TaskResult:
        self._counts = Counter()
        self._cached = self._read_cache(task) if self.params.reuse_scores else None
        self._cache_offset, self._fresh = 0, []
        result = super().run_task(task)
        if self.params.reuse_scores and self._cached is None and self._fresh:
            self.workdir.write_table_atomic(self._cache_path(task), pa.concat_tables(self._fresh))
        self._cached, self._fresh = None, []
        counters = {k: self._counts[k] for k in ("docs_scored", "docs_from_cache", "model_calls")}
        result.extra.update({"model_sha256": self.model_sha256(), **counters})
        return result

    def _scores(self, table: pa.Table) -> dict[str, pa.Array]:
        """Score columns by role for this batch: from the cache, else from the model."""
        n = table.num_rows
        if self._cached is not None:
            part = self._cached.slice(self._cache_offset, n)
            self._cache_offset += n
            self._counts["docs_from_cache"] += n
            return {name: part[name].combine_chunks().cast(ROLE_TYPES[name])
                    for name in part.column_names if name != "id"}
        scorer = self._get_scorer()
        before = scorer.calls
        texts = table["text"].to_pylist()
        roles = {role: values.cast(ROLE_TYPES[role]) for role, values in scorer.score(texts).items()}
        self._counts["model_calls"] += scorer.calls - before
        self._counts["docs_scored"] += n
        if self.params.reuse_scores:
            self._fresh.append(pa.table({"id": table["id"], **roles}))
        return roles

    def process(self, table: pa.Table, task: Task) -> BatchDecision:
        assert task.source is not None
        for role, values in self._scores(table).items():
            name = self.params.column(role)
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, values) if index >= 0 else table.append_column(name, values)
        rule = self._rule(task.source)
        reasons = rule.reasons(table, self._rule_column(rule)) if rule else [None] * table.num_rows
        return BatchDecision.from_mask(table, reasons)

