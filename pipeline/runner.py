"""Runs a recipe's stages in order over a workdir: resumable, refusing silent config changes.

Each stage's config hash chains the hashes of the stages before it, so a change anywhere
upstream is visible downstream. A finished task leaves a marker; a rerun redoes only tasks
without one. A finished stage whose hash differs is refused unless `force`, which deletes
that stage's outputs first (never the cache under WORKDIR/_cache).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.executors import LocalExecutor, RayExecutor, make_executor
from pipeline.lineage import default_input
from pipeline.manifest import LoadedRecipe, Recipe, SourceManifest
from pipeline.progress import StageProgress
from pipeline.registry import stage_class
from pipeline.stage import SourceStats, Stage, StageContext, StageError, TaskResult
from pipeline.workdir import Workdir

log = logging.getLogger("zyda")
RUN_MANIFEST = "manifest.json"


@dataclass
class StageSummary:
    stage_id: str
    status: str
    """"ran" or "skipped" (already done with the same configuration)."""
    tasks: int
    stats: dict[str, SourceStats] = field(default_factory=dict)
    elapsed_s: float = 0.0


def build_stages(recipe: LoadedRecipe, workdir: Workdir, on_bad_record: str | None = None) -> list[tuple[Stage, str]]:
    """Instantiate every stage of the recipe with its chained config hash."""
    built: list[tuple[Stage, str]] = []
    upstream = ""
    for spec in recipe.recipe.stages:
        ctx = StageContext(recipe=recipe, spec=spec, workdir=workdir, input_stage=default_input(recipe, spec.id),
                           upstream_hash=upstream,
                           on_bad_record=on_bad_record or recipe.recipe.execution.on_bad_record)
        stage = stage_class(spec.type)(ctx)
        upstream = stage.config_hash()
        built.append((stage, upstream))
    return built


def run_recipe(recipe: LoadedRecipe, workdir_url: str, stages: list[str] | None = None, executor: str = "ray",
               ray_address: str | None = None, num_cpus: int | None = None, force: bool = False,
               on_bad_record: str | None = None, interactive: bool | None = None) -> list[StageSummary]:
    workdir = Workdir(workdir_url)
    built = build_stages(recipe, workdir, on_bad_record)
    known = [stage.stage_id for stage, _ in built]
    for name in stages or []:
        if name not in known:
            raise StageError(f"no stage {name!r} in {recipe.path}; stages are {known}")
    _write_run_manifest(workdir, recipe, built)
    runner: LocalExecutor | RayExecutor | None = None
    summaries = []
    try:
        for stage, config_hash in built:
            if stages and stage.stage_id not in stages:
                continue
            done = _finished_summary(workdir, stage, config_hash, force)
            if done is not None:
                log.info("%s: already done with this configuration, skipped", stage.stage_id)
                summaries.append(done)
                continue
            if runner is None:
                runner = make_executor(executor, ray_address, num_cpus)
            summaries.append(run_stage(stage, config_hash, runner, interactive))
    finally:
        if runner is not None:
            runner.shutdown()
    return summaries


def _finished_summary(workdir: Workdir, stage: Stage, config_hash: str, force: bool) -> StageSummary | None:
    """The summary of a finished stage with this hash; refuse (or, with force, wipe) a different one."""
    marker_path = workdir.stage_marker(stage.stage_id)
    previous = workdir.read_json(marker_path)["config_hash"] if workdir.exists(marker_path) else None
    if previous is None:
        previous = _task_marker_hashes(workdir, stage.stage_id) - {config_hash}
        previous = next(iter(previous), None)
    if previous is None:
        return None
    if previous == config_hash:
        marker = workdir.read_json(marker_path)
        return StageSummary(stage.stage_id, "skipped", marker["tasks"],
                            {k: SourceStats.from_json(v) for k, v in marker["stats"].items()})
    if not force:
        raise StageError(
            f"stage {stage.stage_id!r} in {workdir.url} was run with a different configuration "
            f"(hash {previous}, now {config_hash}: its parameters, sources or an earlier stage changed). "
            f"Its outputs would mix two configurations. Rerun with --force to delete this stage's "
            f"outputs and run it again.")
    log.warning("%s: configuration changed, --force given: deleting its outputs", stage.stage_id)
    for folder in (workdir.stage_dir(stage.stage_id), workdir.removed_dir(stage.stage_id),
                   workdir.state_dir(stage.stage_id)):
        workdir.remove(folder)
    return None


def _task_marker_hashes(workdir: Workdir, stage_id: str) -> set[str]:
    return {m["config_hash"] for m in task_markers(workdir, stage_id).values()}


def task_markers(workdir: Workdir, stage_id: str) -> dict[str, dict[str, Any]]:
    folder = workdir.state_dir(stage_id)
    if not workdir.exists(folder):
        return {}
    markers = {}
    for path in workdir.fs.ls(folder, detail=False):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith((".", "_")):
            marker = workdir.read_json(path)
            markers[marker["task_id"]] = marker
    return markers


def run_stage(stage: Stage, config_hash: str, runner: LocalExecutor | RayExecutor,
              interactive: bool | None = None) -> StageSummary:
    workdir = stage.workdir
    started = time.perf_counter()
    stage.validate()
    tasks = stage.plan()
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise StageError(f"stage {stage.stage_id!r} planned duplicate task ids")
    markers = {k: m for k, m in task_markers(workdir, stage.stage_id).items()
               if m["config_hash"] == config_hash and k in set(ids)}
    pending = [t for t in tasks if t.task_id not in markers]
    if markers:
        log.info("%s: resuming, %d of %d tasks already done", stage.stage_id, len(markers), len(tasks))
    progress = StageProgress(stage.stage_id, len(tasks), len(markers), interactive)

    def on_done(marker: dict[str, Any]) -> None:
        markers[marker["task_id"]] = marker
        progress.update(marker)

    try:
        runner.map(stage, pending, config_hash, on_done)
    finally:
        progress.close()
    results = {task_id: TaskResult.from_json(markers[task_id]) for task_id in ids}
    totals: dict[str, SourceStats] = {}
    for task_id, result in results.items():
        for source, stats in result.stats.items():
            stats.check(f"stage {stage.stage_id} task {task_id} source {source}")
            totals.setdefault(source, SourceStats()).merge(stats)
    stage.finalize(results)
    elapsed = time.perf_counter() - started
    workdir.write_json_atomic(workdir.stage_marker(stage.stage_id), {
        "config_hash": config_hash, "type": stage.type_name, "sources": stage.ctx.sources,
        "produces_documents": stage.produces_documents, "tasks": len(tasks),
        "stats": {k: v.to_json() for k, v in sorted(totals.items())}, "elapsed_s": round(elapsed, 3)})
    for source, stats in sorted(totals.items()):
        log.info("%s: %s %d in, %d out, dropped %s", stage.stage_id, source, stats.docs_in, stats.docs_out,
                 stats.dropped or "nothing")
    return StageSummary(stage.stage_id, "ran", len(tasks), totals, elapsed)


def _write_run_manifest(workdir: Workdir, recipe: LoadedRecipe, built: list[tuple[Stage, str]]) -> None:
    workdir.write_json_atomic(workdir.path(RUN_MANIFEST), {
        "recipe_path": recipe.path, "recipe_hash": recipe.digest(),
        "recipe": recipe.recipe.model_dump(mode="json"),
        "sources": {k: v.model_dump(mode="json") for k, v in recipe.sources.items()},
        "max_files": recipe.max_files,
        "stages": [{"id": s.stage_id, "type": s.type_name, "config_hash": h} for s, h in built]})


def load_workdir_recipe(workdir: Workdir) -> LoadedRecipe:
    """The recipe a workdir was run with, as recorded in WORKDIR/manifest.json."""
    path = workdir.path(RUN_MANIFEST)
    if not workdir.exists(path):
        raise StageError(f"{workdir.url} has no {RUN_MANIFEST}: it is not a zyda workdir (run `zyda run` first)")
    data = workdir.read_json(path)
    sources = {k: SourceManifest.model_validate(v) for k, v in data["sources"].items()}
    return LoadedRecipe(Recipe.model_validate(data["recipe"]), data["recipe_path"], sources, data.get("max_files"))


def stage_status(workdir: Workdir) -> list[dict[str, Any]]:
    """Per stage: tasks done (markers) and, when finished, docs in/out per source."""
    recipe = load_workdir_recipe(workdir)
    rows = []
    for spec in recipe.recipe.stages:
        markers = task_markers(workdir, spec.id)
        marker_path = workdir.stage_marker(spec.id)
        finished = workdir.read_json(marker_path) if workdir.exists(marker_path) else None
        rows.append({"stage": spec.id, "type": spec.type, "tasks_done": len(markers),
                     "tasks_total": finished["tasks"] if finished else None, "finished": finished is not None,
                     "stats": finished["stats"] if finished else {}})
    return rows
