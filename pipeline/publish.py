"""`zyda publish WORKDIR --repo-id ORG/NAME`: the curated text (and token shards) to a Hub dataset repo.

Everything that can fail is checked before any network call: the repo id, a finished workdir
(every recipe stage done with the configuration recorded in WORKDIR/manifest.json), the token
manifest when `--tokens`, and a Hugging Face token (HF_TOKEN or the local login). The files are
hard-linked (copied for remote workdirs) into a staging folder with the repo layout and sent with
`HfApi.upload_folder`, which in huggingface_hub 2.x (with hf_xet) is what `upload_large_folder`
was: it splits large folders into several commits under the Hub's limits and resumes an
interrupted upload when run again. The token is passed explicitly and scrubbed from any error.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipeline.dataset_card import DATA_DIR, TOKENS_DIR, Component, render_card
from pipeline.lineage import final_document_stage
from pipeline.manifest import LoadedRecipe
from pipeline.runner import RUN_MANIFEST, load_workdir_recipe
from pipeline.stage import StageError
from pipeline.tokenize import TOKEN_MANIFEST
from pipeline.workdir import Workdir

CARD_FILE = "README.md"
PUBLISH_DIR = "_publish"
DEFAULT_LICENSE = "odc-by"


class PublishError(StageError):
    """A publish that cannot go ahead; raised before any upload."""


@dataclass(frozen=True)
class PlannedFile:
    path_in_repo: str
    source: str
    """Absolute path in the workdir's filesystem (empty for the generated card)."""
    size: int


@dataclass
class PublishPlan:
    repo_id: str
    private: bool
    files: list[PlannedFile]
    card: str
    components: list[Component]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def check_repo_id(repo_id: str | None) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not repo_id:
        raise PublishError("give the dataset repo as --repo-id ORG/NAME")
    if repo_id.count("/") != 1:
        raise PublishError(f"--repo-id must be ORG/NAME (a user or organization and a dataset name), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"invalid --repo-id {repo_id!r}: {exc}") from None
    return repo_id


def check_finished(workdir: Workdir, recipe: LoadedRecipe) -> None:
    """Every recipe stage has finished with the configuration the run manifest records."""
    recorded = {s["id"]: s["config_hash"] for s in workdir.read_json(workdir.path(RUN_MANIFEST)).get("stages", [])}
    unfinished = []
    for spec in recipe.recipe.stages:
        marker = workdir.stage_marker(spec.id)
        if not workdir.exists(marker):
            unfinished.append(spec.id)
        elif recorded.get(spec.id) not in (None, workdir.read_json(marker)["config_hash"]):
            unfinished.append(f"{spec.id} (finished with another configuration)")
    if unfinished:
        raise PublishError(f"{workdir.url} is not finished: stages {unfinished} are not done; run "
                           f"`zyda run {recipe.path} --workdir {workdir.url}` first")


def _component(workdir: Workdir, recipe: LoadedRecipe, source: str, tokens: dict[str, Any] | None,
               files: list[PlannedFile]) -> Component:
    stage = final_document_stage(recipe, source)
    documents = 0
    for planned in files:
        with workdir.fs.open(planned.source, "rb") as handle:
            documents += pq.ParquetFile(handle).metadata.num_rows
    stats = workdir.read_json(workdir.stage_marker(stage))["stats"].get(source, {})
    manifest = recipe.sources[source]
    return Component(name=source, stage=stage, documents=documents, text_bytes=int(stats.get("bytes_out", 0)),
                     files=len(files), parquet_bytes=sum(f.size for f in files),
                     tokens=tokens["sources"].get(source, {}).get("tokens") if tokens else None,
                     weight=float(recipe.recipe.mixture.get(source, 1.0)),
                     upstream=manifest.homepage or manifest.name, license=manifest.license)


def plan_publish(workdir: Workdir, repo_id: str, include_tokens: bool = False, private: bool = False,
                 license_id: str | None = None) -> PublishPlan:
    """What would be uploaded: every final document shard, the token shards if asked, and the card.

    The card's license is `license_id`, else the sources' common license, else odc-by (Zyda-2's).
    """
    check_repo_id(repo_id)
    recipe = load_workdir_recipe(workdir)
    check_finished(workdir, recipe)
    token_manifest_path = workdir.path(TOKENS_DIR, TOKEN_MANIFEST)
    tokens = workdir.read_json(token_manifest_path) if workdir.exists(token_manifest_path) else None
    if include_tokens and tokens is None:
        raise PublishError(f"--tokens given but {workdir.url} has no {TOKENS_DIR}/{TOKEN_MANIFEST}: the recipe has "
                           "no finished tokenize stage")
    files: list[PlannedFile] = []
    components = []
    for source in recipe.components:
        stage = final_document_stage(recipe, source)
        own = [PlannedFile(f"{DATA_DIR}/{source}/{posixpath.basename(p)}", p, int(workdir.fs.size(p)))
               for p in workdir.parts(workdir.stage_dir(stage, source))]
        files += own
        components.append(_component(workdir, recipe, source, tokens, own))
    if include_tokens and tokens is not None:
        for shard in tokens["shards"]:
            path = workdir.path(shard["path"])
            files.append(PlannedFile(shard["path"], path, int(workdir.fs.size(path))))
        files.append(PlannedFile(f"{TOKENS_DIR}/{TOKEN_MANIFEST}", token_manifest_path,
                                 int(workdir.fs.size(token_manifest_path))))
    licenses = {recipe.sources[s].license for s in recipe.components}
    license_id = license_id or (licenses.pop() if len(licenses) == 1 else DEFAULT_LICENSE)
    recipe_dump = recipe.recipe.model_dump(mode="json", exclude_defaults=True)
    card = render_card(repo_id, components, recipe_dump, recipe.digest(), license_id, include_tokens,
                       tokens["tokenizer"] if tokens else None)
    files.append(PlannedFile(CARD_FILE, "", len(card.encode())))
    return PublishPlan(repo_id, private, sorted(files, key=lambda f: f.path_in_repo), card, components)


def stage_folder(workdir: Workdir, plan: PublishPlan, staging: Path) -> Path:
    """Lay the plan out under `staging` (hard links when local), removing what is not in the plan.

    A staged file is kept when it is the same file (local) or has the same size (remote copies);
    the folder keeps huggingface_hub's `.cache/huggingface` bookkeeping, so a rerun resumes.
    """
    wanted = {f.path_in_repo for f in plan.files}
    local = isinstance(workdir.fs, LocalFileSystem)
    for planned in plan.files:
        target = staging / planned.path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        if not planned.source:
            target.write_text(plan.card)
            continue
        if target.exists() and (os.path.samefile(target, planned.source) if local
                                else target.stat().st_size == planned.size):
            continue
        target.unlink(missing_ok=True)
        if local:
            try:
                os.link(planned.source, target)
            except OSError:
                shutil.copyfile(planned.source, target)
        else:
            workdir.fs.get(planned.source, str(target))
    for path in sorted(staging.rglob("*"), reverse=True):
        rel = path.relative_to(staging).as_posix()
        if rel.startswith(".cache"):
            continue
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return staging


def default_staging(workdir: Workdir, repo_id: str) -> Path:
    name = repo_id.replace("/", "__")
    if isinstance(workdir.fs, LocalFileSystem):
        return Path(workdir.path(PUBLISH_DIR, name))
    return Path.home() / ".cache" / "zyda" / "publish" / name


def _scrub(message: str, token: str) -> str:
    return message.replace(token, "hf_***") if token else message


def upload(plan: PublishPlan, folder: Path, token: str) -> str:
    """Create the repo (if needed) and upload the staged folder; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private, exist_ok=True)
        api.upload_folder(repo_id=plan.repo_id, repo_type="dataset", folder_path=str(folder),
                          commit_message=f"zyda publish: {len(plan.files)} files",
                          delete_patterns=[f"{DATA_DIR}/**", f"{TOKENS_DIR}/**"])
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way, without the token
        raise PublishError(_scrub(f"upload to {plan.repo_id} failed: {type(exc).__name__}: {exc}", token)) from None
    return str(url)


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login` (a write token)")
    return token


def _print_plan(plan: PublishPlan, staging: Path) -> None:
    print(f"dry run: would create dataset repo {plan.repo_id} (private: {'yes' if plan.private else 'no'}) and "
          f"upload {len(plan.files)} files, {plan.total_bytes:,} bytes, to be staged in {staging}:")
    for planned in plan.files:
        print(f"  {planned.size:>14,}  {planned.path_in_repo}")
    print(f"\n----- {CARD_FILE} -----\n{plan.card}")


def _cmd_publish(args: argparse.Namespace) -> int:
    workdir = Workdir(args.workdir, create=False)
    plan = plan_publish(workdir, args.repo_id, args.tokens, args.private, args.license)
    staging = Path(args.staging_dir) if args.staging_dir else default_staging(workdir, plan.repo_id)
    if args.dry_run:
        _print_plan(plan, staging)
        return 0
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}:
        raise PublishError("HF_HUB_OFFLINE is set: cannot upload (use --dry-run to see the plan)")
    token = hub_token()
    stage_folder(workdir, plan, staging)
    print(f"uploading {len(plan.files)} files ({plan.total_bytes:,} bytes) to {plan.repo_id} ...", file=sys.stderr)
    url = upload(plan, staging, token)
    print(f"published {url}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    publish = subparsers.add_parser("publish", help="upload the curated text (and tokens) to a Hub dataset repo")
    publish.add_argument("workdir")
    publish.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo (created if missing)")
    publish.add_argument("--tokens", action="store_true", help="also upload tokens/ (shards and manifest.json)")
    publish.add_argument("--dry-run", action="store_true", help="print the files and the card; no network")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.add_argument("--license", default=None,
                         help=f"card license id (default: the sources' common license, else {DEFAULT_LICENSE})")
    publish.add_argument("--staging-dir", default=None,
                         help=f"where the repo layout is staged (default WORKDIR/{PUBLISH_DIR}/ORG__NAME, or "
                              "~/.cache/zyda/publish for remote workdirs)")
    publish.set_defaults(func=_cmd_publish)
