"""`zyda dedup-report WORKDIR`: cluster sizes, removals by source and by duplicate-of source, the
largest clusters with snippets, for every finished `components` stage of a run (or one of them)."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.stage import StageError
from pipeline.workdir import Workdir


def components_stages(workdir: Workdir, wanted: str | None) -> list[str]:
    """Finished `components` stages of the run; `wanted` may name one, or the `dedup_remove` stage after it."""
    from dedup.upstream import upstream_stage
    from pipeline.runner import build_stages, load_workdir_recipe

    stages = {stage.stage_id: stage for stage, _ in build_stages(load_workdir_recipe(workdir), workdir)}
    if wanted is not None:
        if wanted not in stages:
            raise StageError(f"no stage {wanted!r} in this run; stages are {list(stages)}")
        stage = stages[wanted]
        if stage.type_name == "dedup_remove":
            return [upstream_stage(stage.ctx, ("components",), stage.params.components)]  # type: ignore[attr-defined]
        if stage.type_name != "components":
            raise StageError(f"stage {wanted!r} is a {stage.type_name} stage: name a components or dedup_remove stage")
        return [wanted]
    found = [s for s, stage in stages.items() if stage.type_name == "components" and workdir.exists(workdir.stage_marker(s))]
    if not found:
        raise StageError(f"{workdir.url} has no finished components stage")
    return found


def _command(args: argparse.Namespace) -> int:
    from dedup.report import dedup_summary, summary_markdown  # numba: only when the command runs

    workdir = Workdir(args.workdir, create=False)
    try:
        summaries = [dedup_summary(workdir, stage, top=args.top) for stage in components_stages(workdir, args.stage)]
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summaries, indent=1))
    else:
        print("\n\n".join(f"## {s['stage']}\n\n{summary_markdown(s)}" for s in summaries))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dedup-report", help="what dedup did in a run: clusters, removals, examples")
    parser.add_argument("workdir", help="the run's workdir (local path or fsspec URL)")
    parser.add_argument("--stage", default=None, help="a components or dedup_remove stage id (default: all)")
    parser.add_argument("--top", type=int, default=5, help="largest clusters to show (default 5)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=_command)
