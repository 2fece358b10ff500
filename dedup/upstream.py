"""How the dedup stages find each other in a recipe, and the small JSON file each one leaves.

The chain is `minhash | exact_hash` -> `lsh` -> `components` -> `dedup_remove`. Each stage names its
predecessor explicitly (a param) or takes the nearest earlier stage of the right type, and reads
that stage's `_meta.json` (written by its `finalize`): parts and their node ordinals, settings,
partition counts.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.stage import StageContext, StageError
from pipeline.workdir import Workdir

META_FILE = "_meta.json"
KEY_STAGE_TYPES = ("minhash", "exact_hash")


def upstream_stage(ctx: StageContext, types: tuple[str, ...], explicit: str | None) -> str:
    """The id of the stage this one reads: `explicit`, else the nearest earlier stage of `types`."""
    specs = ctx.recipe.recipe.stages
    ids = [s.id for s in specs]
    here = ids.index(ctx.spec.id)
    if explicit is not None:
        if explicit not in ids[:here]:
            raise StageError(f"stage {ctx.spec.id!r}: {explicit!r} is not an earlier stage of {ctx.recipe.path}")
        kind = specs[ids.index(explicit)].type
        if kind not in types:
            raise StageError(f"stage {ctx.spec.id!r}: stage {explicit!r} has type {kind!r}, expected one of {types}")
        return explicit
    for spec in reversed(specs[:here]):
        if spec.type in types:
            return spec.id
    raise StageError(f"stage {ctx.spec.id!r} needs an earlier stage of type {' or '.join(types)} in {ctx.recipe.path}")


def meta_path(workdir: Workdir, stage_id: str) -> str:
    return posixpath.join(workdir.stage_dir(stage_id), META_FILE)


def write_meta(workdir: Workdir, stage_id: str, meta: dict[str, Any]) -> None:
    workdir.write_json_atomic(meta_path(workdir, stage_id), meta)


def read_meta(workdir: Workdir, stage_id: str, reader: str) -> dict[str, Any]:
    """The `_meta.json` of a finished stage; a clear error when it has not run yet."""
    path = meta_path(workdir, stage_id)
    if not workdir.exists(workdir.stage_marker(stage_id)) or not workdir.exists(path):
        raise StageError(f"stage {reader!r} reads stage {stage_id!r}, which has not finished in {workdir.url}; "
                         f"run it first")
    return workdir.read_json(path)


def node_location(meta: dict[str, Any], node: int) -> str:
    part = meta["parts"][node >> 32]
    return f"{part['path']} row {node & 0xFFFFFFFF}"


def fetch_texts(workdir: Workdir, meta: dict[str, Any], nodes: np.ndarray) -> pa.Array:
    """Texts of `nodes` (ascending), read part by part (only the text column, one part at a time)."""
    chunks = []
    ordinals = nodes >> 32
    for ordinal in np.unique(ordinals):
        rows = (nodes[ordinals == ordinal] & 0xFFFFFFFF).astype(np.int64)
        texts = workdir.read_table(workdir.path(meta["parts"][int(ordinal)]["path"]), ["text"])["text"]
        chunks.append(texts.take(pa.array(rows)).combine_chunks().cast(pa.large_string()))
    return pa.chunked_array(chunks, type=pa.large_string()) if chunks else pa.chunked_array([], pa.large_string())
