"""`zyda publish`: the plan, the card, the upload calls (Hub replaced), and errors before any upload."""

from __future__ import annotations

import fnmatch
import json
import logging
from pathlib import Path

import huggingface_hub
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, HfApi

from pipeline.cli import main
from pipeline.manifest import load_recipe
from pipeline.publish import PublishError, plan_publish, stage_folder
from pipeline.runner import run_recipe
from pipeline.workdir import Workdir
from tests.test_tokenize import make_recipe, tokens_stage, write_corpus

SECRET = "hf_ZyDaTeStSeCrEt0123456789abcdefXYZ"
REPO = "zyda-org/zyda-fixture"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("upstream"))


@pytest.fixture(scope="module")
def work(tmp_path_factory, data) -> Path:
    root = tmp_path_factory.mktemp("publish")
    recipe = make_recipe(root / "recipe", data, [tokens_stage()])
    run_recipe(load_recipe(recipe), str(root / "work"), executor="local")
    return root / "work"


@pytest.fixture
def no_hub(monkeypatch):
    """Any Hub call fails the test: these paths must stop before the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was called")

    for name in ("create_repo", "upload_folder", "create_commit", "whoami"):
        monkeypatch.setattr(HfApi, name, refuse)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """HfApi.create_repo / upload_folder recorded instead of sent; the token comes from HF_TOKEN."""
    calls: list[dict] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, "token": self.token, **kwargs})
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        layout = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                        if p.is_file() and ".cache" not in p.parts)
        calls.append({"call": "upload_folder", "repo_id": repo_id, "folder": folder, "layout": layout,
                      "token": self.token, **kwargs})

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return calls


def data_files(work: Path) -> dict[str, Path]:
    return {f"data/{p.parent.name}/{p.name}": p for p in sorted((work / "ingest").glob("*/part-*.parquet"))}


def token_files(work: Path) -> dict[str, Path]:
    manifest = json.loads((work / "tokens" / "manifest.json").read_text())
    return {s["path"]: work / s["path"] for s in manifest["shards"]} | {"tokens/manifest.json": work / "tokens/manifest.json"}


def test_dry_run_lists_every_output_shard_and_nothing_else(work, no_hub, capsys):
    assert main(["publish", str(work), "--repo-id", REPO, "--tokens", "--dry-run"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[-1] for line in out.split("----- README.md -----")[0].splitlines()[1:] if line.strip()]
    expected = sorted(list(data_files(work)) + list(token_files(work)) + ["README.md"])
    assert sorted(listed) == expected
    assert not any(p.startswith(("removed", "_state", "report", "ingest/")) for p in listed)
    assert (work / "removed" / "tokens").exists()  # there was something to leave out
    assert "configs:" in out and "## How to load" in out
    assert not (work / "_publish").exists()  # a dry run stages nothing
    main(["publish", str(work), "--repo-id", REPO, "--dry-run"])
    assert "tokens/" not in capsys.readouterr().out.split("----- README.md -----")[0]


def test_card_parses_and_its_configs_match_the_files(work):
    plan = plan_publish(Workdir(str(work)), REPO, include_tokens=True)
    card = DatasetCard(plan.card)
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in card.data.configs}
    assert set(configs) == {"default", "fwe3", "dclm", "zyda", "dolma_cc"}
    assert all(c["data_files"][0]["split"] == "train" for c in card.data.configs)
    files = list(data_files(work))
    assert sorted(fnmatch.filter(files, configs["default"])) == sorted(files)
    for component, pattern in configs.items():
        if component != "default":
            assert sorted(fnmatch.filter(files, pattern)) == [f for f in files if f.startswith(f"data/{component}/")]
    assert card.data.license == "odc-by"  # the sources disagree (dclm is cc-by-4.0): Zyda-2's license
    tokens = json.loads((work / "tokens" / "manifest.json").read_text())["sources"]
    for component in plan.components:
        documents = sum(pq.ParquetFile(p).metadata.num_rows for f, p in data_files(work).items()
                        if f.startswith(f"data/{component.name}/"))
        assert component.documents == documents
        assert component.tokens == tokens[component.name]["tokens"]
        assert f"| {component.name} | {documents:,} | {component.tokens:,} |" in plan.card
    assert "interleave_datasets" in plan.card and "mixture:" in plan.card


def test_upload_creates_the_repo_and_sends_the_layout_without_leaking_the_token(work, fake_hub, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    assert main(["publish", str(work), "--repo-id", REPO, "--tokens", "--private"]) == 0
    create, upload = fake_hub
    assert create["call"] == "create_repo" and upload["call"] == "upload_folder"
    assert (create["repo_id"], create["repo_type"], create["private"], create["exist_ok"]) == (REPO, "dataset", True, True)
    assert (upload["repo_id"], upload["repo_type"]) == (REPO, "dataset")
    assert create["token"] == upload["token"] == SECRET
    expected = {**data_files(work), **token_files(work)}
    assert upload["layout"] == sorted(list(expected) + ["README.md"])
    for rel, source in expected.items():
        assert (upload["folder"] / rel).stat().st_ino == source.stat().st_ino  # hard links, no copies
    card = (upload["folder"] / "README.md").read_text()
    assert DatasetCard(card).data.configs[0]["config_name"] == "default"
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text + "".join(
        p.read_text(errors="ignore") for p in work.rglob("*.json"))
    assert SECRET not in everything and "published https://huggingface.co/datasets/" in captured.out


def test_rerun_restages_only_the_plan_and_keeps_resume_state(work, fake_hub):
    assert main(["publish", str(work), "--repo-id", REPO, "--tokens"]) == 0
    folder = fake_hub[-1]["folder"]
    resume = folder / ".cache" / "huggingface" / "upload" / "state.json"
    resume.parent.mkdir(parents=True, exist_ok=True)
    resume.write_text("{}")
    staged = folder / next(iter(data_files(work)))
    staged.unlink()
    staged.write_bytes(b"stale bytes of an earlier run")  # not the workdir's file any more
    assert main(["publish", str(work), "--repo-id", REPO]) == 0
    assert not (folder / "tokens").exists() and resume.exists()
    assert staged.stat().st_ino == next(iter(data_files(work).values())).stat().st_ino
    assert fake_hub[-1]["layout"] == sorted(list(data_files(work)) + ["README.md"])
    assert fake_hub[-1]["delete_patterns"] == ["data/**", "tokens/**"]


@pytest.mark.parametrize("repo_id, message", [("noslash", "ORG/NAME"), ("a/b/c", "ORG/NAME"),
                                               ("org/bad--name", "invalid --repo-id"), ("", "--repo-id ORG/NAME")])
def test_invalid_repo_ids_are_refused(work, no_hub, capsys, repo_id, message):
    assert main(["publish", str(work), "--repo-id", repo_id]) == 2
    assert message in capsys.readouterr().err


def test_missing_repo_id_is_a_usage_error(work, no_hub, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["publish", str(work)])
    assert exit_info.value.code == 2 and "--repo-id" in capsys.readouterr().err


def test_missing_token_is_refused_before_upload(work, no_hub, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    assert main(["publish", str(work), "--repo-id", REPO]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def test_offline_without_dry_run_is_refused(work, no_hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert main(["publish", str(work), "--repo-id", REPO]) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and SECRET not in err


def test_unfinished_workdir_and_missing_tokens_are_refused(tmp_path, data, no_hub, capsys):
    recipe = make_recipe(tmp_path / "recipe", data, [tokens_stage()])
    run_recipe(load_recipe(recipe), str(tmp_path / "half"), stages=["ingest"], executor="local")
    assert main(["publish", str(tmp_path / "half"), "--repo-id", REPO, "--dry-run"]) == 2
    assert "not finished: stages ['tokens']" in capsys.readouterr().err
    plain = make_recipe(tmp_path / "plain", data, [])
    run_recipe(load_recipe(plain), str(tmp_path / "text-only"), executor="local")
    assert main(["publish", str(tmp_path / "text-only"), "--repo-id", REPO, "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["publish", str(tmp_path / "text-only"), "--repo-id", REPO, "--tokens", "--dry-run"]) == 2
    assert "no tokens/manifest.json" in capsys.readouterr().err
    assert main(["publish", str(tmp_path / "nowhere"), "--repo-id", REPO, "--dry-run"]) == 2
    assert main(["publish", str(tmp_path / "recipe"), "--repo-id", REPO, "--dry-run"]) == 2
    assert "not a zyda workdir" in capsys.readouterr().err


def test_upload_errors_are_reported_without_the_token(work, fake_hub, monkeypatch, capsys):
    def failing_upload(self, **kwargs):
        import httpx

        response = httpx.Response(403, request=httpx.Request("POST", "https://huggingface.co/api/datasets/x/commit"))
        raise huggingface_hub.errors.HfHubHTTPError(f"403 Forbidden for token {SECRET}", response=response)

    monkeypatch.setattr(HfApi, "upload_folder", failing_upload)
    assert main(["publish", str(work), "--repo-id", REPO]) == 2
    err = capsys.readouterr().err
    assert "upload to zyda-org/zyda-fixture failed: HfHubHTTPError: 403 Forbidden" in err and SECRET not in err


def test_staging_copies_files_of_remote_workdirs(work, tmp_path):
    """A non-local filesystem (fsspec memory://) is copied into the staging folder."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in sorted(work.rglob("*")):
        if path.is_file() and "_publish" not in path.parts:
            memory.pipe(f"/remote/{path.relative_to(work).as_posix()}", path.read_bytes())
    remote = Workdir("memory://remote")
    plan = plan_publish(remote, REPO, include_tokens=True)
    folder = stage_folder(remote, plan, tmp_path / "staged")
    for planned in plan.files:
        staged = folder / planned.path_in_repo
        assert staged.stat().st_size == planned.size
        if planned.source:
            assert staged.read_bytes() == memory.cat(planned.source)
    with pytest.raises(PublishError, match="ORG/NAME"):
        plan_publish(remote, "bad")
