"""Keep rules: which scored documents stay, and the drop reason that names the rule.

A rule is either a set of labels (`labels: [High]` on the predicted-label column) or a threshold
on a numeric score column (`min` and/or `max`, both inclusive: DCLM keeps score >= 0.018112,
FineWeb-Edu keeps int_score >= 3). No rule means score only. The reason written to `removed/`
says what was seen and what the rule wanted, e.g. `quality_pred=Medium not in [High]`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator


class KeepRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] | None = Field(default=None, min_length=1, description="keep these predicted labels")
    column: str | None = Field(default=None, description="score column of a threshold (default: the model's score)")
    min: float | None = Field(default=None, description="keep score >= min")
    max: float | None = Field(default=None, description="keep score <= max")

    @model_validator(mode="after")
    def _one_kind(self) -> "KeepRule":
        threshold = self.min is not None or self.max is not None
        if self.labels is not None and threshold:
            raise ValueError("a keep rule is either `labels` or a threshold (`min`/`max`), not both")
        if self.labels is None and not threshold:
            raise ValueError("a keep rule needs `labels` or `min`/`max` (leave `keep` out to only score)")
        if self.labels is not None and self.column is not None:
            raise ValueError("`column` applies to thresholds; `labels` always use the predicted-label column")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}: nothing could be kept")
        return self

    @property
    def is_threshold(self) -> bool:
        return self.labels is None

    def reasons(self, table: pa.Table, column: str) -> list[str | None]:
        """Per row: None when kept, else the drop reason. `column` is the label or score column."""
        values = table[column]
        if self.labels is not None:
            keep = pc.is_in(values, value_set=pa.array(self.labels, pa.string()))
            wanted = "[" + ", ".join(self.labels) + "]"
            return [None if k else f"{column}={v} not in {wanted}"
                    for k, v in zip(keep.to_pylist(), values.to_pylist())]
        scores = values.to_numpy(zero_copy_only=False).astype(np.float64)
        reasons: list[str | None] = [None] * len(scores)
        if self.min is not None:
            for i in np.flatnonzero(~(scores >= self.min)):  # NaN fails the rule too
                reasons[i] = f"{column} < {self.min:g}"
        if self.max is not None:
            for i in np.flatnonzero(~(scores <= self.max)):
                reasons[i] = reasons[i] or f"{column} > {self.max:g}"
        return reasons
