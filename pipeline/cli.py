"""The `zyda` command line: run a recipe or one stage, inspect a workdir, and the tools around it."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from typing import Callable

# Modules that add subcommands through `register_cli(subparsers)`.
CLI_MODULES: list[str] = ["pipeline.sample", "classifiers.cli", "pipeline.tokens_inspect", "pipeline.publish",
                          "training.cli", "dedup.cli"]

log = logging.getLogger("zyda")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="recipe YAML, e.g. manifests/zyda2.yaml")
    parser.add_argument("--workdir", required=True, help="output folder: local path or fsspec URL (s3://, hf://...)")
    parser.add_argument("--executor", choices=["ray", "local"], default="ray",
                        help="ray (default: a local Ray started for the run, or --ray-address) or local (no Ray)")
    parser.add_argument("--ray-address", default=None, help="join a running cluster, e.g. 'auto'")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--force", action="store_true", help="rerun stages whose configuration changed")
    parser.add_argument("--on-bad-record", choices=["fail", "skip"], default=None,
                        help="skip: record unreadable records under removed/ instead of failing")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N files of each source")


def _run(args: argparse.Namespace, stages: list[str] | None) -> int:
    from pipeline.manifest import load_recipe
    from pipeline.runner import run_recipe

    recipe = load_recipe(args.manifest, max_files=args.limit)
    summaries = run_recipe(recipe, args.workdir, stages=stages, executor=args.executor,
                           ray_address=args.ray_address, num_cpus=args.num_cpus, force=args.force,
                           on_bad_record=args.on_bad_record)
    for summary in summaries:
        docs_in = sum(s.docs_in for s in summary.stats.values())
        docs_out = sum(s.docs_out for s in summary.stats.values())
        print(f"{summary.stage_id:>14}: {summary.status:7} {summary.tasks:5d} tasks  "
              f"{docs_in:>12,} in  {docs_out:>12,} out  {summary.elapsed_s:8.1f} s")
    print(f"workdir: {args.workdir}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(args, [s for s in args.stages.split(",") if s] if args.stages else None)


def _stage_command(type_names: tuple[str, ...]) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        from pipeline.manifest import load_recipe

        recipe = load_recipe(args.manifest, max_files=args.limit)
        ids = [s.id for s in recipe.recipe.stages if s.type in type_names]
        if not ids:
            print(f"error: {args.manifest} has no stage of type {' or '.join(type_names)}", file=sys.stderr)
            return 2
        return _run(args, ids)

    return command


def _cmd_status(args: argparse.Namespace) -> int:
    from pipeline.runner import stage_status
    from pipeline.workdir import Workdir

    rows = stage_status(Workdir(args.workdir, create=False))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        total = row["tasks_total"] if row["tasks_total"] is not None else "?"
        state = "done" if row["finished"] else ("partial" if row["tasks_done"] else "not started")
        docs_in = sum(s["docs_in"] for s in row["stats"].values())
        docs_out = sum(s["docs_out"] for s in row["stats"].values())
        print(f"{row['stage']:>14} ({row['type']}): {row['tasks_done']}/{total} tasks, {state}"
              + (f", {docs_in:,} docs in, {docs_out:,} out" if row["finished"] else ""))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report
    from pipeline.workdir import Workdir

    paths = write_report(Workdir(args.workdir, create=False))
    for path in paths:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pipeline.registry import GROUPS, LIBRARY_ONLY, type_names

    parser = argparse.ArgumentParser(prog="zyda", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a recipe (all stages, or --stages)")
    _add_run_options(run)
    run.add_argument("--stages", default=None, help="comma-separated stage ids to run (default: all)")
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser("status", help="tasks done/total and documents per stage of a workdir")
    status.add_argument("workdir")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    report = sub.add_parser("report", help="write WORKDIR/report/report.{md,html} with charts")
    report.add_argument("workdir")
    report.set_defaults(func=_cmd_report)

    for module in CLI_MODULES:
        importlib.import_module(module).register_cli(sub)
    commands = {name: (name,) for name in type_names()} | GROUPS
    for name, types in sorted(commands.items()):
        if name in sub.choices or name in LIBRARY_ONLY:  # `report`: the command does what the stage does
            continue
        what = f"the recipe's {name} stage(s)" if types == (name,) else f"the recipe's {name} stages ({', '.join(types)})"
        stage = sub.add_parser(name, help=f"run only {what}, in recipe order")
        _add_run_options(stage)
        stage.set_defaults(func=_stage_command(types))
    return parser


def _user_error(exc: BaseException) -> BaseException | None:
    """The error to show without a traceback, unwrapping Ray's task errors."""
    from pipeline.manifest import ManifestError
    from pipeline.readers import BadInputError
    from pipeline.stage import AccountingError, StageError
    from pipeline.workdir import WorkdirError

    cause = getattr(exc, "cause", None)
    if cause is not None and type(exc).__name__.startswith("RayTaskError"):
        exc = cause
    return exc if isinstance(exc, (ManifestError, BadInputError, StageError, AccountingError, WorkdirError)) else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - shown plainly below when it is the user's input
        shown = _user_error(exc)
        if shown is None:
            raise
        print(f"error: {shown}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
