"""Keep documents whose upstream column satisfies a comparison: the `metadata_threshold` stage.

Zyda-2 keeps FineWeb-Edu documents with `int_score >= 3` (which turns FineWeb-Edu score-2 into
"fwe3"):

    - id: fwe3
      type: metadata_threshold
      sources: [fwe3]
      params: {field: meta.int_score, op: ">=", value: 3}

`field` is `meta.<upstream column>` (checked against the source manifest's `keep_columns` before
any task runs) or a column an earlier stage added (e.g. `language_score`). Vectorized with
pyarrow.compute. Dropped: `metadata:<field>` when the comparison fails, `metadata:<field>:missing`
when the value is null (unless `missing: keep`).
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from pipeline.stage import BatchDecision, DocumentStage, StageError, Task

_OPS = {">=": "greater_equal", ">": "greater", "<=": "less_equal", "<": "less", "==": "equal", "!=": "not_equal"}


class MetadataThresholdParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$",
                       description="meta.<upstream column>, or a column added by an earlier stage")
    op: Literal[">=", ">", "<=", "<", "==", "!="]
    value: bool | int | float | str
    missing: Literal["drop", "keep"] = Field(default="drop", description="documents whose value is null")


class MetadataThresholdStage(DocumentStage):
    """Keeps rows where `<field> <op> <value>`; e.g. FineWeb-Edu `meta.int_score >= 3`."""

    type_name = "metadata_threshold"
    Params = MetadataThresholdParams
    params: MetadataThresholdParams

    @property
    def _path(self) -> list[str]:
        return self.params.field.split(".")

    def validate(self) -> None:
        path = self._path
        if path[0] != "meta" or len(path) != 2:
            return  # a column of an earlier stage: checked on the first batch
        for source in self.ctx.sources:
            kept = self.ctx.recipe.sources[source].keep_columns
            if path[1] not in kept:
                raise StageError(f"stage {self.stage_id}: source {source!r} keeps no upstream column {path[1]!r} "
                                 f"in meta (its manifest's keep_columns: {sorted(kept)})")

    def _values(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        head, *rest = self._path
        if head not in table.column_names:
            raise StageError(f"stage {self.stage_id}: no column {head!r} (columns: {table.column_names})")
        values = table.column(head)
        for name in rest:
            if not pa.types.is_struct(values.type) or values.type.get_field_index(name) < 0:
                raise StageError(f"stage {self.stage_id}: {self.params.field!r} not found (at {name!r}; "
                                 f"type {values.type})")
            values = pc.struct_field(values, name)
        return values

    def process(self, table: pa.Table, task: Task) -> BatchDecision:
        values = self._values(table)
        try:
            passed = getattr(pc, _OPS[self.params.op])(values, pa.scalar(self.params.value))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
            raise StageError(f"stage {self.stage_id}: cannot compare {self.params.field} ({values.type}) "
                             f"{self.params.op} {self.params.value!r}: {exc}") from None
        failed_reason = f"metadata:{self.params.field}"
        missing_reason = None if self.params.missing == "keep" else f"{failed_reason}:missing"
        reasons = [None if ok else (failed_reason if ok is False else missing_reason) for ok in passed.to_pylist()]
        return BatchDecision.from_mask(table, reasons)
