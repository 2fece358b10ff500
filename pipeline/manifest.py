"""Validated YAML manifests: upstream source descriptions and the recipes that chain stages over them.

A recipe is the one configuration of a run. Stage parameters are validated by the stage's own
pydantic model (see `pipeline.stage.Stage.Params`) when the recipe is loaded, so a typo fails at
start-up, not hours into a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SourceFormat = Literal["parquet", "jsonl", "jsonl.zst", "json.gz"]
ColumnType = Literal["auto", "string", "int64", "float64", "bool", "json"]
"""How a kept upstream column is stored in `meta`: `auto` keeps Parquet's type, `json` serializes
nested values to a JSON string (so heterogeneous dicts keep one schema across files)."""
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the offending key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def expand_env(value: str) -> str:
    """Expand `${VAR}` and `${VAR:-default}` so one recipe serves several data locations."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ManifestError(f"environment variable {name} is not set (used as ${{{name}}})")
        return default

    return _ENV_PATTERN.sub(substitute, value)


class SourceManifest(StrictModel):
    """Where one upstream dataset lives, its schema, and its rank when duplicates are resolved."""

    name: str = Field(description="upstream dataset name, e.g. HuggingFaceFW/fineweb-edu-score-2")
    component: str = Field(pattern=r"^[a-z0-9_]+$", description="component name used in ids and `source`")
    format: SourceFormat
    uri: list[str] = Field(default_factory=list, description="glob(s): local path, hf://datasets/..., s3://...")
    url_list: str | None = Field(default=None, description="a text file of file URLs, one a line (Dolma)")
    url_pattern: str | None = Field(default=None, description="regex selecting lines of `url_list`")
    text_field: str = "text"
    id_field: str | None = None
    keep_columns: dict[str, ColumnType] = Field(default_factory=dict,
                                                description="upstream columns kept in `meta`, with their type")
    dedup_rank: int = Field(ge=1, description="1 is the best source; lower-ranked duplicates are removed")
    license: str = "unknown"
    homepage: str | None = None

    @field_validator("uri", mode="before")
    @classmethod
    def _uri_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_location(self) -> "SourceManifest":
        if not self.uri and not self.url_list:
            raise ValueError("give `uri` (globs) or `url_list` (a file listing the data files)")
        return self

    def expanded_uris(self) -> list[str]:
        return [expand_env(u) for u in self.uri]


class SourceRef(StrictModel):
    """A recipe's use of a source manifest, with optional overrides."""

    manifest: str
    uri: list[str] | None = None
    max_files: int | None = Field(default=None, ge=1, description="read only the first N files (partial runs)")

    @field_validator("uri", mode="before")
    @classmethod
    def _uri_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class StageSpec(StrictModel):
    """One step of a recipe; `params` is validated by the stage type's own model."""

    id: str = Field(pattern=r"^[a-z0-9_\-]+$")
    type: str
    sources: list[str] | None = Field(default=None, description="components this stage applies to; default all")
    input: str | None = Field(default=None, description="stage whose documents to read; default the previous")
    params: dict[str, Any] = Field(default_factory=dict)


class ExecutionSettings(StrictModel):
    batch_size: int = Field(default=10_000, ge=1, description="rows per in-memory batch")
    target_part_bytes: int = Field(default=256 * 2**20, ge=1024, description="bounded output Parquet size")
    on_bad_record: Literal["fail", "skip"] = "fail"


class Recipe(StrictModel):
    name: str
    description: str = ""
    seed: int = 0
    sources: list[SourceRef] = Field(min_length=1)
    stages: list[StageSpec] = Field(min_length=1)
    mixture: dict[str, float] = Field(default_factory=dict, description="training weight per component")
    execution: ExecutionSettings = ExecutionSettings()

    @model_validator(mode="after")
    def _unique_stage_ids(self) -> "Recipe":
        seen: set[str] = set()
        for stage in self.stages:
            if stage.id in seen:
                raise ValueError(f"stage id {stage.id!r} is used twice")
            seen.add(stage.id)
        return self


class LoadedRecipe:
    """A recipe with its resolved sources; the object every stage receives."""

    def __init__(self, recipe: Recipe, path: str, sources: dict[str, SourceManifest],
                 max_files: dict[str, int | None] | None = None):
        self.recipe = recipe
        self.path = path
        self.sources = sources
        self.max_files = max_files or {}

    @property
    def components(self) -> list[str]:
        return list(self.sources)

    def stage(self, stage_id: str) -> StageSpec:
        for spec in self.recipe.stages:
            if spec.id == stage_id:
                return spec
        raise ManifestError(f"{self.path}: no stage with id {stage_id!r}; stages are {[s.id for s in self.recipe.stages]}")

    def source_rank(self) -> dict[str, int]:
        return {name: src.dedup_rank for name, src in self.sources.items()}

    def digest(self) -> str:
        payload = {"recipe": self.recipe.model_dump(mode="json"),
                   "sources": {k: v.model_dump(mode="json") for k, v in self.sources.items()}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _format_validation_error(path: str, error: ValidationError) -> str:
    lines = [f"{path}: invalid manifest"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<top level>"
        kind = item["type"]
        if kind == "extra_forbidden":
            lines.append(f"  - {where}: unknown key")
        elif kind == "missing":
            lines.append(f"  - {where}: required key is missing")
        else:
            lines.append(f"  - {where}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ManifestError(f"manifest file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_source(path: str | Path) -> SourceManifest:
    path = Path(path)
    try:
        return SourceManifest.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ManifestError(_format_validation_error(str(path), exc)) from None


def load_recipe(path: str | Path, max_files: int | None = None) -> LoadedRecipe:
    """Load and validate a recipe, its source manifests, and every stage's parameters."""
    path = Path(path)
    try:
        recipe = Recipe.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ManifestError(_format_validation_error(str(path), exc)) from None
    sources: dict[str, SourceManifest] = {}
    for ref in recipe.sources:
        source = load_source(path.parent / ref.manifest)
        updates: dict[str, Any] = {}
        if ref.uri:
            updates["uri"] = ref.uri
        if source.component in sources:
            raise ManifestError(f"{path}: component {source.component!r} appears twice in sources")
        sources[source.component] = source.model_copy(update=updates) if updates else source
    limits = {s: ref.max_files for s, ref in zip(sources, recipe.sources)}
    if max_files is not None:
        limits = {s: min(v or max_files, max_files) for s, v in limits.items()}
    loaded = LoadedRecipe(recipe, str(path), sources, limits)
    _validate_stages(loaded)
    return loaded


def _validate_stages(loaded: LoadedRecipe) -> None:
    from pipeline.registry import stage_class

    ids: list[str] = []
    for spec in loaded.recipe.stages:
        where = f"{loaded.path}: stage {spec.id!r}"
        cls = stage_class(spec.type, where=where)
        try:
            cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            raise ManifestError(_format_validation_error(f"{where} params", exc)) from None
        for source in spec.sources or []:
            if source not in loaded.sources:
                raise ManifestError(f"{where}: unknown source {source!r}; known: {sorted(loaded.sources)}")
        if spec.input is not None and spec.input not in ids:
            raise ManifestError(f"{where}: input {spec.input!r} is not an earlier stage")
        ids.append(spec.id)
