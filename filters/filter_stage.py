"""A recipe stage around any datatrove `BaseFilter`: rows in, datatrove `Document`s through the
filter, kept rows out (with the filter's text edits and features), dropped rows with a reason.

- Drop reasons are `<prefix>:<the filter's reason>` (e.g. `zyda1:min_length`,
  `gopher_quality:gopher_short_doc`), counted per reason in the stage stats.
- What a filter stores in `doc.metadata` goes to the `filter_features` column: a JSON object keyed
  by stage id, merged with what earlier filter stages stored, on kept and dropped rows alike.
- A filter that edits `doc.text` (Zyda-1's transform, C4's line removal) changes the text of kept
  rows; dropped rows keep the text they came in with, so `removed/` can be restored as is.
- A document on which the filter raises is dropped with reason `<prefix>:error:<ExceptionType>`
  (and logged), never lost and never fatal to the task.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import orjson
import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result

from pipeline.stage import BatchDecision, DocumentStage, Task

log = logging.getLogger("zyda.filters")

FEATURES_COLUMN = "filter_features"
_LOGGED_ERRORS = 5


class FilterStage(DocumentStage):
    """Base of the filter stages: subclasses build the datatrove filter and name the reason prefix."""

    reason_prefix: ClassVar[str] = ""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_filter"] = None  # rebuilt by setup() wherever the stage runs
        state["_is_setup"] = False
        return state

    def build_filter(self) -> BaseFilter:
        raise NotImplementedError

    def setup(self) -> None:
        self._filter = self.build_filter()
        self._errors = 0

    def features_of(self, doc: Document) -> Any:
        """What to store for this document in `filter_features` (None: nothing)."""
        return doc.metadata or None

    def extra_columns(self, docs: list[Document]) -> dict[str, pa.Array]:
        """Further columns from the filtered documents (e.g. the language and its score)."""
        return {}

    def decide(self, doc: Document) -> str | None:
        """The drop reason of one document, or None to keep it."""
        try:
            keep, reason = get_filter_result(self._filter.filter(doc))
        except Exception as exc:  # a third-party filter failing on one odd document must not lose the batch
            self._errors += 1
            if self._errors <= _LOGGED_ERRORS:
                log.warning("%s: filter raised on document %s: %r", self.stage_id, doc.id, exc)
            return f"{self.reason_prefix}:error:{type(exc).__name__}"
        return None if keep else f"{self.reason_prefix}:{reason or 'dropped'}"

    def process(self, table: pa.Table, task: Task) -> BatchDecision:
        self.ensure_setup()
        texts = table.column("text").to_pylist()
        docs = [Document(text=text if text is not None else "", id=doc_id)
                for text, doc_id in zip(texts, table.column("id").to_pylist())]
        reasons = [self.decide(doc) for doc in docs]
        if any(doc.text is not text and doc.text != text for doc, text in zip(docs, texts)):
            new_texts = [doc.text if reason is None else text for doc, reason, text in zip(docs, reasons, texts)]
            table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(new_texts, pa.string()))
        features = [self.features_of(doc) for doc in docs]
        if any(f is not None for f in features):
            table = _merge_features(table, self.stage_id, features)
        for name, column in self.extra_columns(docs).items():
            index = table.schema.get_field_index(name)
            table = table.append_column(name, column) if index < 0 else table.set_column(index, name, column)
        return BatchDecision.from_mask(table, reasons)


def _merge_features(table: pa.Table, stage_id: str, features: list[Any]) -> pa.Table:
    """Set `filter_features[stage_id]` on every row, keeping what earlier stages stored."""
    index = table.schema.get_field_index(FEATURES_COLUMN)
    previous = table.column(FEATURES_COLUMN).to_pylist() if index >= 0 else [None] * table.num_rows
    merged = []
    for before, mine in zip(previous, features):
        entry = orjson.loads(before) if before else {}
        if mine is not None:
            entry[stage_id] = mine
        merged.append(orjson.dumps(entry).decode() if entry else None)
    column = pa.array(merged, pa.string())
    return table.append_column(FEATURES_COLUMN, column) if index < 0 else table.set_column(index, FEATURES_COLUMN, column)
