"""Library entry points: dedup an in-memory Arrow table with the very stages a recipe runs.

    from dedup import fuzzy_dedup
    result = fuzzy_dedup(table, preset="zyda2", policy="zyda2")   # id, component, removed, duplicate_of

The table (`id`, `source`, `text`) is written to a workdir (a temporary one by default) as the
output of a `preloaded` stage, then `minhash` (or `exact_hash`) -> `lsh` -> `components` run on
it through `pipeline.runner.run_recipe`, locally or on Ray.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dedup.config import PresetName
from dedup.resolve import DECISION_SCHEMA, POLICIES, Policy
from dedup.shuffle import read_partition
from pipeline.manifest import LoadedRecipe, ManifestError, Recipe, SourceManifest, load_source

RESULT_SCHEMA = pa.schema([("id", pa.string()), ("component", pa.string()), ("removed", pa.bool_()),
                           ("duplicate_of", pa.string())])
SOURCE_MANIFESTS = Path(__file__).resolve().parents[1] / "manifests" / "sources"
INPUT_STAGE = "input"
RECIPE_NAME = "dedup-library-call"


def default_ranks() -> dict[str, int]:
    """Dedup rank of every component named in manifests/sources/*.yaml (fwe3 1, dclm 2, zyda 3, dolma_cc 4)."""
    ranks: dict[str, int] = {}
    for path in sorted(SOURCE_MANIFESTS.glob("*.yaml")):
        source = load_source(path)
        ranks[source.component] = source.dedup_rank
    return ranks


def fuzzy_dedup(table: pa.Table, preset: PresetName = "zyda2", policy: Policy = "zyda2", workdir: str | None = None,
                executor: str = "local", *, ranks: dict[str, int] | None = None, partitions: int = 4,
                verify: bool = False, threshold: float | None = None, seed: int = 0, **minhash: Any) -> pa.Table:
    """MinHash-LSH dedup of `table` (`id`, `source`, `text`): one row per input row, in input order, with
    `component` (smallest id of its duplicate component), `removed` and `duplicate_of` (kept id, or null).

    `minhash` overrides preset settings (shingle, k, normalize, bands, rows, permutation, shingle_hash).
    """
    key_stage = {"id": "minhash", "type": "minhash", "params": {"preset": preset, "partitions": partitions, **minhash}}
    lsh_params: dict[str, Any] = {"verify": verify}
    if threshold is not None:
        lsh_params["threshold"] = threshold
    return _run(table, key_stage, lsh_params, policy, workdir, executor, ranks, seed)


def exact_dedup(table: pa.Table, normalize: str = "none", policy: Policy = "zyda2", workdir: str | None = None,
                executor: str = "local", *, ranks: dict[str, int] | None = None, partitions: int = 4,
                seed: int = 0) -> pa.Table:
    """Exact dedup (optionally after `simple` or `zyda1` normalization); same result columns as `fuzzy_dedup`."""
    key_stage = {"id": "exact", "type": "exact_hash", "params": {"normalize": normalize, "partitions": partitions}}
    return _run(table, key_stage, {}, policy, workdir, executor, ranks, seed)


def _run(table: pa.Table, key_stage: dict[str, Any], lsh_params: dict[str, Any], policy: Policy,
         workdir: str | None, executor: str, ranks: dict[str, int] | None, seed: int) -> pa.Table:
    from pipeline.runner import run_recipe
    from pipeline.workdir import Workdir

    table = _checked(table, policy)
    sources = sorted(set(table["source"].to_pylist()))
    ranks = _ranks(sources, policy, ranks)
    with tempfile.TemporaryDirectory(prefix="zyda-dedup-") as scratch:
        url = workdir or scratch
        work = Workdir(url)
        stages = [{"id": INPUT_STAGE, "type": "preloaded"}, key_stage,
                  {"id": "lsh", "type": "lsh", "params": lsh_params},
                  {"id": "components", "type": "components", "params": {"policy": policy}}]
        _clear(work, [INPUT_STAGE, "minhash", "exact", "lsh", "components"])  # either key stage of a past call
        for source in sources:
            work.write_table_atomic(work.path(INPUT_STAGE, source, "part-00000.parquet"),
                                    table.filter(pc.equal(table["source"], source)))
        recipe = _recipe(sources, ranks, stages, seed, work.path(INPUT_STAGE))
        run_recipe(recipe, url, executor=executor, interactive=False)
        decisions = _decisions(work)
    return _result(table["id"], decisions)


def _clear(work: Any, stage_ids: list[str]) -> None:
    """Empty what an earlier call left in a reused workdir; never touch another kind of run's workdir."""
    from pipeline.runner import RUN_MANIFEST

    manifest = work.path(RUN_MANIFEST)
    if work.exists(manifest) and work.read_json(manifest)["recipe"]["name"] != RECIPE_NAME:
        raise ValueError(f"{work.url} holds a recipe run ({work.read_json(manifest)['recipe']['name']}), not an "
                         f"earlier dedup call: give an empty or dedup-only workdir")
    for stage_id in stage_ids:
        for folder in (work.stage_dir(stage_id), work.removed_dir(stage_id), work.state_dir(stage_id)):
            work.remove(folder)


def _checked(table: pa.Table, policy: str) -> pa.Table:
    missing = [c for c in ("id", "source", "text") if c not in table.column_names]
    if missing:
        raise ValueError(f"fuzzy_dedup needs columns id, source, text; missing {missing}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {POLICIES}")
    table = table.select(["id", "source", "text"]).combine_chunks()
    for column in ("id", "source"):
        if table[column].null_count:
            raise ValueError(f"{table[column].null_count} rows have a null {column}")
    ids = pc.cast(table["id"], pa.string())
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = pc.value_counts(ids)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        raise ValueError(f"ids must be unique: {len(repeated)} repeated, e.g. {repeated[0].as_py()!r}")
    return table.set_column(0, "id", ids)


def _ranks(sources: list[str], policy: str, ranks: dict[str, int] | None) -> dict[str, int]:
    if policy == "keep_one" and ranks is None:
        return {s: 1 for s in sources}
    ranks = ranks if ranks is not None else default_ranks()
    unknown = [s for s in sources if s not in ranks]
    if unknown:
        raise ValueError(f"policy {policy!r} needs a rank for every source; none for {unknown}: pass ranks={{...}} "
                         f"(1 is the best source)")
    return {s: ranks[s] for s in sources}


def _recipe(sources: list[str], ranks: dict[str, int], stages: list[dict[str, Any]], seed: int,
            folder: str) -> LoadedRecipe:
    try:
        manifests = {s: SourceManifest(name=s, component=s, format="parquet", uri=[f"{folder}/{s}/*.parquet"],
                                       dedup_rank=ranks[s]) for s in sources}
    except ValueError as exc:
        raise ManifestError(f"source names must be lowercase letters, digits and _: {exc}") from None
    recipe = Recipe.model_validate({"name": RECIPE_NAME, "seed": seed, "stages": stages,
                                    "sources": [{"manifest": f"<{s}>"} for s in sources]})
    return LoadedRecipe(recipe, "<dedup.api>", manifests)


def _decisions(work: Any) -> pa.Table:
    from dedup.upstream import read_meta

    meta = read_meta(work, "components", "dedup.api")
    folder = work.path("components", "decisions")
    tables = [read_partition(work, folder, q, ["id", "component", "removed", "duplicate_of"], schema=DECISION_SCHEMA)
              for q in range(meta["partitions"])]
    return pa.concat_tables(tables)


def _result(ids: pa.ChunkedArray, decisions: pa.Table) -> pa.Table:
    """Decisions for documents with duplicates; every other document is its own kept component."""
    ids = ids.combine_chunks()
    if decisions.num_rows == 0:
        return pa.table({"id": ids, "component": ids, "removed": pa.array([False] * len(ids)),
                         "duplicate_of": pa.nulls(len(ids), pa.string())}, schema=RESULT_SCHEMA)
    decisions = decisions.combine_chunks()
    index = pc.index_in(ids, value_set=decisions["id"])
    found = pc.is_valid(index)
    pick = pc.fill_null(index, 0)
    return pa.table({"id": ids,
                     "component": pc.if_else(found, decisions["component"].take(pick), ids),
                     "removed": pc.if_else(found, decisions["removed"].take(pick), False),
                     "duplicate_of": pc.if_else(found, decisions["duplicate_of"].take(pick),
                                                pa.scalar(None, pa.string()))}, schema=RESULT_SCHEMA)
