"""The `zyda1_filter` recipe stage: `filters.zyda1.Zyda1Filter` over every document.

    - id: zyda1
      type: zyda1_filter
      params:
        word_lists: required          # or optional: run the other rules when the lists are unavailable
        word_lists_dir: null          # a folder with the four lists; default: user cache / pinned download
        keep_transformed: true        # Zyda-1 kept the transformed text
        thresholds: {min_length: 100} # any of filters.zyda1.Zyda1Thresholds; defaults are Zyda-1's

The lists are resolved once on the driver (`validate`, before any task) and shipped to the
workers with the stage, so workers need neither network nor a shared cache. Required and
unavailable: the run stops there with a message saying how to provide them. Optional and
unavailable: a warning in the log, `word_lists: skipped` in every task's `extra` (the report shows
it), and the word-list rules are off. Their content hash is part of the config hash, so a rerun
after the lists become available is not mistaken for the finished run without them.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from datatrove.data import Document
from pydantic import BaseModel, ConfigDict, Field

from filters.filter_stage import FilterStage
from filters.wordlists import UPSTREAM_BASE_URL, WordListError, load_word_lists, word_lists_digest
from filters.zyda1 import FEATURES_KEY, Zyda1Filter, Zyda1Thresholds
from pipeline.manifest import expand_env
from pipeline.stage import StageError, Task, TaskResult

log = logging.getLogger("zyda.filters")


class Zyda1Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    word_lists: Literal["required", "optional"] = Field(
        default="required", description="optional: without the lists, run the other rules and say so")
    word_lists_dir: str | None = Field(default=None, description="folder with the four lists (${VAR} expanded; "
                                                                 "empty: none)")
    word_lists_url: str = Field(default=UPSTREAM_BASE_URL, description="where to download missing lists from")
    verify_word_lists: bool = Field(default=True, description="check word_lists_dir files against the pinned sha256")
    keep_transformed: bool = Field(default=True, description="keep Zyda-1's transformed text (else the raw text)")
    thresholds: Zyda1Thresholds = Zyda1Thresholds()


class Zyda1FilterStage(FilterStage):
    """Zyda-1's syntactic filter; features in `filter_features[<stage id>]`, reasons `zyda1:<rule>`."""

    type_name = "zyda1_filter"
    reason_prefix = "zyda1"
    Params = Zyda1Params
    params: Zyda1Params

    _lists: dict[str, list[str]] | None = None
    _lists_error: str | None = None
    _resolved = False

    def _resolve_lists(self) -> dict[str, list[str]] | None:
        """The word lists, or None (with the reason kept) when they cannot be had; resolved once."""
        if not self._resolved:
            folder = expand_env(self.params.word_lists_dir or "") or None  # "${VAR:-}" unset: no folder
            try:
                self._lists = load_word_lists(folder, self.params.word_lists_url, self.params.verify_word_lists)
            except WordListError as exc:
                self._lists, self._lists_error = None, str(exc)
            self._resolved = True
        return self._lists

    def hash_extra(self) -> Any:
        lists = self._resolve_lists()
        return {"word_lists": word_lists_digest(lists) if lists is not None else "skipped"}

    def validate(self) -> None:
        if self._resolve_lists() is not None:
            return
        if self.params.word_lists == "required":
            raise StageError(f"stage {self.stage_id}: the Zyda-1 word lists are required but unavailable: "
                             f"{self._lists_error}")
        log.warning("stage %s: Zyda-1 word-list rules SKIPPED (word_lists: optional): %s",
                    self.stage_id, self._lists_error)

    def build_filter(self) -> Zyda1Filter:
        lists = self._resolve_lists()
        if lists is None and self.params.word_lists == "required":
            raise StageError(f"stage {self.stage_id}: the Zyda-1 word lists are unavailable: {self._lists_error}")
        return Zyda1Filter(keep_transformed=self.params.keep_transformed, word_lists=lists or {},
                           thresholds=self.params.thresholds)

    def features_of(self, doc: Document) -> Any:
        return doc.metadata.get(FEATURES_KEY)

    def run_task(self, task: Task) -> TaskResult:
        result = super().run_task(task)
        result.extra["word_lists"] = "used" if self._resolve_lists() is not None else "skipped"
        return result

    def report_section(self) -> str | None:
        from pipeline.runner import task_markers

        states = {m.get("extra", {}).get("word_lists") for m in task_markers(self.workdir, self.stage_id).values()}
        if "skipped" in states:
            return ("**The Zyda-1 word-list rules were skipped** in this run (`word_lists: optional` and the "
                    "lists were unavailable): no document was dropped for profanity, sexual or Chinese spam "
                    "words or cursed substrings. Give `word_lists_dir:` or allow the pinned download to apply them.")
        return "The Zyda-1 word-list rules were applied (pinned, sha256-verified lists)."
