"""Where a model lives: a local path, `hf://owner/repo[@rev][/file]`, a Hub id or a URL, made local once.

Downloads go through huggingface_hub's cache (Hub) or `ZYDA_MODEL_CACHE` (default
`~/.cache/zyda/models`, URLs and other fsspec locations), written under a temporary name and
renamed so concurrent actors never read half a file. A model's identity is the sha256 of its
bytes, recorded in the stage's config hash: the same name with other weights is a different run.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.manifest import expand_env
from pipeline.stage import StageError

HF_PREFIX = "hf://"
HF_FOLDER_FILES = ["*.json", "*.safetensors", "*.model", "vocab.txt", "merges.txt"]
"""What a transformers classifier needs from a Hub repo (configs, safetensors weights, tokenizer)."""
_CHUNK = 8 * 2**20


def model_cache_dir() -> Path:
    return Path(os.environ.get("ZYDA_MODEL_CACHE", Path.home() / ".cache" / "zyda" / "models"))


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None
    filename: str | None


def parse_hub(location: str) -> HubRef:
    """`hf://owner/repo[@rev][/path/in/repo]` -> its parts."""
    rest = location[len(HF_PREFIX):].strip("/")
    parts = rest.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise StageError(f"model location {location!r}: expected hf://owner/repo[@revision][/file]")
    repo, revision = parts[1], None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    filename = "/".join(parts[2:]) or None
    return HubRef(f"{parts[0]}/{repo}", revision, filename)


def _looks_like_hub_id(location: str) -> bool:
    parts = location.split("/")
    return len(parts) == 2 and all(parts) and not location.startswith((".", "/", "~")) and "://" not in location


def _hub_error(location: str, exc: Exception) -> StageError:
    offline = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if os.environ.get("HF_HUB_OFFLINE") else ""
    return StageError(f"model {location!r} could not be fetched from the Hugging Face Hub{offline}: "
                      f"{type(exc).__name__}: {exc}")


def _download_url(url: str) -> Path:
    """Copy any fsspec URL into the model cache once; later calls reuse the file."""
    import fsspec

    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    target = model_cache_dir() / "url" / key / (posixpath.basename(url.split("?")[0]) or "model.bin")
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    try:
        with fsspec.open(url, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise StageError(f"model {url!r} could not be downloaded: {type(exc).__name__}: {exc}") from None
    return target


def local_model_file(location: str) -> Path:
    """A single-file model (fastText) as a local path: a path, `hf://owner/repo/file` or a URL."""
    location = expand_env(location)
    if location.startswith(HF_PREFIX):
        ref = parse_hub(location)
        if ref.filename is None:
            raise StageError(f"model location {location!r} names a repository, not a file: add the file name")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision))
        except Exception as exc:
            raise _hub_error(location, exc) from None
    if "://" in location and not location.startswith("file://"):
        return _download_url(location)
    path = Path(location.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise StageError(f"model file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    return path


def local_model_folder(location: str) -> Path:
    """A transformers model folder as a local path: a folder, `hf://owner/repo[@rev]` or a Hub id."""
    location = expand_env(location)
    path = Path(location.removeprefix("file://")).expanduser()
    if path.is_dir():
        return path
    if location.startswith(HF_PREFIX) or _looks_like_hub_id(location):
        ref = parse_hub(location if location.startswith(HF_PREFIX) else HF_PREFIX + location)
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=HF_FOLDER_FILES)
        except Exception as exc:
            raise _hub_error(location, exc) from None
        return Path(folder) / ref.filename if ref.filename else Path(folder)
    raise StageError(f"model folder {path} does not exist (give a local folder, hf://owner/repo or owner/repo)")


def sha256_file(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a multi-GB model is hashed once."""
    stat = path.stat()
    memo_key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = model_cache_dir() / "sha256" / f"{memo_key}.json"
    if memo.is_file():
        return json.loads(memo.read_text())["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".tmp-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({"path": str(path), "sha256": value}))
        os.replace(tmp, memo)
    except OSError:
        pass  # a read-only home: hash again next time
    return value


def sha256_folder(folder: Path) -> str:
    """One digest over every file of a model folder (name + content), hidden files excluded."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".")
                                                                         for part in p.relative_to(folder).parts))
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()
