"""`zyda filter MANIFEST --workdir DIR`: run only a recipe's heuristic filter stages, in recipe order.

The filter stages are the Zyda-1 filter, datatrove's Gopher/C4/FineWeb filters, language ID and
metadata thresholds; the stages before them must have finished in the workdir.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

FILTER_STAGE_TYPES = ("language_id", "zyda1_filter", "gopher_quality", "gopher_repetition", "c4_quality",
                      "fineweb_quality", "metadata_threshold")


def _cmd_filter(args: argparse.Namespace) -> int:
    from pipeline.cli import _run
    from pipeline.manifest import load_recipe

    recipe = load_recipe(args.manifest, max_files=args.limit)
    ids = [s.id for s in recipe.recipe.stages if s.type in FILTER_STAGE_TYPES]
    if not ids:
        print(f"error: {args.manifest} has no filter stage (types: {', '.join(FILTER_STAGE_TYPES)})", file=sys.stderr)
        return 2
    return _run(args, ids)


def register_cli(subparsers: Any) -> None:
    from pipeline.cli import _add_run_options

    parser = subparsers.add_parser("filter", help="run only the recipe's heuristic filter stages "
                                                  "(Zyda-1, Gopher/C4/FineWeb, language ID, metadata thresholds)")
    _add_run_options(parser)
    parser.set_defaults(func=_cmd_filter)
