"""The Zyda-1 word lists: from a folder, or downloaded once from the pinned upstream commit.

The project does not ship the lists. They come from a folder named in the manifest, or from
Zyphra/Zyda_processing at a pinned commit, verified by sha256 and cached under the user cache
dir (`$ZYDA_CACHE_DIR`, else `$XDG_CACHE_HOME/zyda`, else `~/.cache/zyda`). A file that does not
match its sha256 is never used or cached. With `HF_HUB_OFFLINE=1` or `ZYDA_OFFLINE=1` (how the
project's tests and demo run) nothing is fetched over the network; file:// URLs still work.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

UPSTREAM_REPO = "Zyphra/Zyda_processing"
UPSTREAM_COMMIT = "6ed3c545311f2f42bcc7d171dfbc82ba843e1ab1"
UPSTREAM_BASE_URL = (f"https://raw.githubusercontent.com/{UPSTREAM_REPO}/{UPSTREAM_COMMIT}"
                     "/zyda/preprocessing_and_filtering/")
WORD_LIST_SHA256 = {
    "profanity_word_list.json": "8b428c5e9ccb11fd09b3f0f2c5c323f8abf6950292b83b9f89c49c30e6e659c9",
    "sexual_word_list.json": "735092acabdbeb915a3cb272f5b830f7cae8ff3dca9b3af5e6ee97743c477245",
    "zh_pornsignals.json": "ce3ed166127b24448fcd26698347ab80e95730bf28dac32f47c09ee75029b6bb",
    "cursed_substrings.json": "5c6e453c461eeae4c4fda5e313232509513f713fc8c41fc3d8611a9f17fe4db4",
}
WORD_LIST_NAMES = tuple(WORD_LIST_SHA256)
"""In the order Zyda-1 counted them (the keys of `word_list_counts`)."""
_TIMEOUT_S = 30

Fetch = Callable[[str], bytes]


class WordListError(RuntimeError):
    """The word lists are missing, unreachable or not the pinned ones; the message says how to fix it."""


def cache_dir() -> Path:
    """Where downloaded word lists are kept, per upstream commit."""
    root = os.environ.get("ZYDA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "zyda")
    return Path(root) / "zyda1_word_lists" / UPSTREAM_COMMIT


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def offline() -> bool:
    """Whether network downloads are disabled (HF_HUB_OFFLINE=1 or ZYDA_OFFLINE=1)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "ZYDA_OFFLINE"))


def _fetch(url: str) -> bytes:
    """GET `url` (https:// or file://)."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310 - fixed, pinned URLs
        return response.read()


def _parse(name: str, data: bytes, where: str) -> list[str]:
    try:
        words = json.loads(data.decode("utf-8"))["words"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WordListError(f"{where}: not a Zyda-1 word list ({{\"words\": [...]}}): {exc}") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise WordListError(f"{where}: `words` must be a list of strings")
    return words


def _how_to_fix() -> str:
    return (f"Give a folder holding {', '.join(WORD_LIST_NAMES)} as `word_lists_dir:` in the stage's params, "
            f"or copy them into {cache_dir()} (they are zyda/preprocessing_and_filtering/*.json of "
            f"github.com/{UPSTREAM_REPO} at commit {UPSTREAM_COMMIT}), or allow network access to "
            f"{UPSTREAM_BASE_URL}")


def _read_folder(folder: Path, verify: bool) -> dict[str, list[str]]:
    lists = {}
    for name in WORD_LIST_NAMES:
        path = folder / name
        if not path.is_file():
            raise WordListError(f"word list {path} not found. {_how_to_fix()}")
        data = path.read_bytes()
        if verify and _sha256(data) != WORD_LIST_SHA256[name]:
            raise WordListError(f"{path}: sha256 {_sha256(data)} is not the pinned upstream "
                                f"{WORD_LIST_SHA256[name]}; set `verify_word_lists: false` to use edited lists")
        lists[name] = _parse(name, data, str(path))
    return lists


def _download(name: str, base_url: str, target: Path, fetch: Fetch) -> None:
    url = base_url.rstrip("/") + "/" + name
    if offline() and not url.startswith("file:"):
        raise WordListError(f"the word list {name} is not cached and downloads are off (HF_HUB_OFFLINE / "
                            f"ZYDA_OFFLINE is set). {_how_to_fix()}")
    try:
        data = fetch(url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WordListError(f"could not download the word list {url} ({exc}) and no cached copy exists. "
                            f"{_how_to_fix()}") from None
    if _sha256(data) != WORD_LIST_SHA256[name]:
        raise WordListError(f"downloaded {url} has sha256 {_sha256(data)}, expected {WORD_LIST_SHA256[name]}: "
                            "refusing to use or cache it")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
    partial.write_bytes(data)
    os.replace(partial, target)


def load_word_lists(folder: str | Path | None = None, base_url: str = UPSTREAM_BASE_URL,
                    verify: bool = True, fetch: Fetch = _fetch) -> dict[str, list[str]]:
    """The four word lists by file name; from `folder`, else the cache, downloading what is missing."""
    if folder is not None:
        return _read_folder(Path(folder).expanduser(), verify)
    cached = cache_dir()
    for name in WORD_LIST_NAMES:
        path = cached / name
        if not path.is_file() or _sha256(path.read_bytes()) != WORD_LIST_SHA256[name]:
            _download(name, base_url, path, fetch)
    return _read_folder(cached, verify=True)


def word_lists_digest(lists: dict[str, list[str]]) -> str:
    """A short hash of the lists' content (part of a stage's config hash)."""
    return _sha256(json.dumps(lists, sort_keys=True, ensure_ascii=False).encode())[:16]
