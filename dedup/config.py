"""MinHash-LSH settings: named presets, explicit overrides, and the LSH S-curve they imply.

Presets (the published settings they reproduce):
- `zyda2`: character 25-grams of the raw text, 8 bands x 16 rows (NeMo Curator, as run for Zyda-2).
- `zyda1`: Zyda-1 normalization, word 13-grams, 32 bands x 4 rows.
- `datatrove`: simple normalization, word 5-grams, 14 bands x 8 rows (datatrove's defaults).

Permutations default to `affine64` (datasketch 2.0's scheme on already avalanche-mixed shingle
hashes): on character 25-grams it signs ~4x faster than the exact `mersenne61` universal family,
and the detection rates of both follow the S-curve (tests/test_dedup_accuracy.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dedup.hashing import MERSENNE61, PERM_AFFINE64, PERM_MERSENNE61, UNIT_CHARS, UNIT_WORDS
from dedup.normalize import Normalization

PresetName = Literal["zyda2", "zyda1", "datatrove"]

PRESETS: dict[str, dict[str, Any]] = {
    "zyda2": {"shingle": "chars", "k": 25, "normalize": "none", "bands": 8, "rows": 16},
    "zyda1": {"shingle": "words", "k": 13, "normalize": "zyda1", "bands": 32, "rows": 4},
    "datatrove": {"shingle": "words", "k": 5, "normalize": "simple", "bands": 14, "rows": 8},
}


@dataclass(frozen=True)
class MinHashConfig:
    """A fully resolved MinHash-LSH configuration (what decides every signature bit)."""

    shingle: Literal["chars", "words"]
    k: int
    normalize: Normalization
    bands: int
    rows: int
    permutation: Literal["mersenne61", "affine64"] = "affine64"
    shingle_hash: Literal["poly61", "xxh64"] = "poly61"
    seed: int = 0

    @property
    def num_hashes(self) -> int:
        return self.bands * self.rows

    @property
    def unit_kind(self) -> int:
        return UNIT_CHARS if self.shingle == "chars" else UNIT_WORDS

    @property
    def perm_kind(self) -> int:
        return PERM_MERSENNE61 if self.permutation == "mersenne61" else PERM_AFFINE64

    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of each hash function, drawn from the seed (identical on every worker)."""
        rng = np.random.Generator(np.random.PCG64([self.seed, 0x5EED]))
        if self.permutation == "mersenne61":
            a = rng.integers(1, int(MERSENNE61), size=self.num_hashes, dtype=np.uint64)
            b = rng.integers(0, int(MERSENNE61), size=self.num_hashes, dtype=np.uint64)
        else:
            a = rng.integers(0, 2**64 - 1, size=self.num_hashes, dtype=np.uint64, endpoint=True) | np.uint64(1)
            b = rng.integers(0, 2**64 - 1, size=self.num_hashes, dtype=np.uint64, endpoint=True)
        return a, b

    def base(self) -> np.uint64:
        """Base of the rolling polynomial shingle hash."""
        rng = np.random.Generator(np.random.PCG64([self.seed, 0xBA5E]))
        return np.uint64(rng.integers(2**20, int(MERSENNE61) - 1, dtype=np.uint64))

    def key_seed(self) -> np.uint64:
        return np.uint64((self.seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64)

    def threshold(self) -> float:
        return s_curve_threshold(self.bands, self.rows)

    def describe(self) -> str:
        return (f"{self.shingle} {self.k}-grams ({self.normalize} normalization), {self.num_hashes} hashes = "
                f"{self.bands} bands x {self.rows} rows, {self.permutation}; LSH 50% point at Jaccard "
                f"{self.threshold():.3f}, approx (1/b)^(1/r) = {(1 / self.bands) ** (1 / self.rows):.3f}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def detection_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """P(two documents of Jaccard `similarity` share at least one band) = 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.power(similarity, rows)) ** bands


def s_curve_threshold(bands: int, rows: int) -> float:
    """The Jaccard similarity detected with probability 1/2 (the S-curve's midpoint)."""
    return (1.0 - 0.5 ** (1.0 / bands)) ** (1.0 / rows)


class MinHashSettings(BaseModel):
    """Recipe parameters: a preset plus any explicit override (explicit keys win)."""

    model_config = ConfigDict(extra="forbid")

    preset: PresetName | None = Field(default=None, description="zyda2, zyda1 or datatrove")
    shingle: Literal["chars", "words"] | None = None
    k: int | None = Field(default=None, ge=1, le=1000, description="units per shingle")
    normalize: Normalization | None = None
    bands: int | None = Field(default=None, ge=1, le=1024)
    rows: int | None = Field(default=None, ge=1, le=1024)
    num_hashes: int | None = Field(default=None, ge=1, description="must equal bands x rows when given")
    permutation: Literal["mersenne61", "affine64"] = Field(
        default="affine64", description="affine64: a*h+b mod 2^64, odd a (fast); mersenne61: (a*h+b) mod 2^61-1")
    shingle_hash: Literal["poly61", "xxh64"] = Field(
        default="poly61", description="poly61: compiled rolling hash; xxh64: xxhash of each shingle's text")
    seed: int | None = Field(default=None, description="default: the recipe's seed")

    @model_validator(mode="after")
    def _complete(self) -> "MinHashSettings":
        self.resolved(0)
        return self

    def resolved(self, default_seed: int) -> MinHashConfig:
        values: dict[str, Any] = dict(PRESETS[self.preset]) if self.preset else {}
        for name in ("shingle", "k", "normalize", "bands", "rows"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        missing = [n for n in ("shingle", "k", "normalize", "bands", "rows") if n not in values]
        if missing:
            raise ValueError(f"give a preset ({', '.join(PRESETS)}) or all of {missing}")
        if self.num_hashes is not None and self.num_hashes != values["bands"] * values["rows"]:
            raise ValueError(f"num_hashes={self.num_hashes} but bands x rows = {values['bands']} x "
                             f"{values['rows']} = {values['bands'] * values['rows']}")
        seed = self.seed if self.seed is not None else default_seed
        return MinHashConfig(permutation=self.permutation, shingle_hash=self.shingle_hash, seed=seed, **values)


def preset_config(preset: PresetName, seed: int = 0, **overrides: Any) -> MinHashConfig:
    return MinHashSettings(preset=preset, seed=seed, **overrides).resolved(seed)


def log_curve(bands: int, rows: int, points: tuple[float, ...] = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95)) -> str:
    """A one-line S-curve table for stage logs."""
    return ", ".join(f"P(s={s:.2f})={float(detection_probability(s, bands, rows)):.3f}" for s in points)
