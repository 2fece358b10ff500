"""Which stage's documents a stage reads: the nearest earlier document stage that handled a source.

A stage that applies to some sources only (say, a classifier on zyda and dolma_cc) writes nothing
for the others; later stages read those sources from further up the chain, so nothing is copied.
"""

from __future__ import annotations

from pipeline.manifest import LoadedRecipe
from pipeline.registry import stage_class
from pipeline.stage import StageError
from pipeline.workdir import Workdir


def default_input(recipe: LoadedRecipe, stage_id: str) -> str | None:
    """The stage's declared `input`, else the closest earlier stage that produces documents."""
    specs = recipe.recipe.stages
    index = [s.id for s in specs].index(stage_id)
    if specs[index].input is not None:
        return specs[index].input
    for spec in reversed(specs[:index]):
        if stage_class(spec.type).produces_documents:
            return spec.id
    return None


def document_stage_for(recipe: LoadedRecipe, stage_id: str | None, source: str) -> str:
    """Walk back from `stage_id` to the first document stage that processed `source`."""
    start = stage_id
    while stage_id is not None:
        spec = recipe.stage(stage_id)
        if source in (spec.sources or recipe.components) and stage_class(spec.type).produces_documents:
            return stage_id
        stage_id = default_input(recipe, stage_id)
    raise StageError(f"no stage at or before {start!r} produces documents for source {source!r}")


def document_parts(recipe: LoadedRecipe, workdir: Workdir, stage_id: str | None, source: str) -> list[str]:
    """Parquet partitions of `source` as of `stage_id`; the providing stage must have finished."""
    provider = document_stage_for(recipe, stage_id, source)
    if not workdir.exists(workdir.stage_marker(provider)):
        raise StageError(f"stage {provider!r} has not finished in {workdir.url}; run it first "
                         f"(zyda run {recipe.path} --workdir {workdir.url} --stages {provider})")
    return workdir.parts(workdir.stage_dir(provider, source))


def final_document_stage(recipe: LoadedRecipe, source: str) -> str:
    """The last stage whose documents for `source` are the curated result (publish, report)."""
    return document_stage_for(recipe, recipe.recipe.stages[-1].id, source)
