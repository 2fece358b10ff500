"""The training tokenizer: Mistral v0.1 (Zamba2's), built offline or loaded from the Hub, plus any other.

Names a recipe can give (`tokenizer:`):
- `mistral-v0.1`: built here, without network, from the SentencePiece model that ships in the
  `mistral-common` package (`mistral_common/data/tokenizer.model.v1`). It reproduces the
  `tokenizer.json` of `mistralai/Mistral-7B-v0.1` (BPE, byte fallback, `Prepend("▁")` +
  `Replace(" ", "▁")` normalizer, no pre-tokenizer, merges ranked by SentencePiece piece score);
  see the README's tokenizer section for the measured agreement with `sentencepiece`.
- `mistralai/Mistral-7B-v0.1`: the Hub's file when the Hub is reachable, else the build above (same
  fingerprint, so a run's config hash does not depend on the network).
- any other Hub name (`org/name`), a local `tokenizer.json`, a folder holding one, or a
  SentencePiece `.model` file (BPE models only).

Two choices hold for every tokenizer: literal special-token strings in a document (`</s>` in web
text) are encoded as text, never as control ids, so a document cannot forge a boundary; and EOS
(optionally BOS first) is added by the Rust post-processor, so the hot path is one `encode_batch`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import itertools
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

log = logging.getLogger("zyda")

MISTRAL_BUILTIN = "mistral-v0.1"
MISTRAL_HUB = "mistralai/Mistral-7B-v0.1"
DEFAULT_TOKENIZER = MISTRAL_BUILTIN
SPM_PACKAGE, SPM_FILE = "mistral_common", "data/tokenizer.model.v1"
_EOS_CANDIDATES = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "[SEP]")
_BOS_CANDIDATES = ("<s>", "<|begin_of_text|>", "<bos>", "[CLS]")
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED = 1, 2, 3, 4  # SentencePiece piece types


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded or used; the message names the offline alternatives."""


@dataclass(frozen=True)
class TokenizerInfo:
    """What the token manifest records about the tokenizer, and what decides the token ids."""

    name: str
    vocab_size: int
    bos_id: int | None
    eos_id: int
    sha256: str
    """sha256 of the file the tokenizer was built from (SentencePiece model or tokenizer.json)."""
    fingerprint: str
    """sha256 of the parts that decide ids (model, normalizer, pre-tokenizer): equal fingerprints
    mean equal ids, whichever file they came from."""
    origin: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def token_type(self) -> pa.DataType:
        return pa.uint16() if self.vocab_size <= 2**16 else pa.uint32()


@dataclass(frozen=True)
class LoadedTokenizer:
    tokenizer: Tokenizer
    info: TokenizerInfo


def offline_options() -> str:
    return (f"offline, use `{MISTRAL_BUILTIN}` (built from the SentencePiece model in the mistral-common "
            f"package; `{MISTRAL_HUB}` maps to it), a local tokenizer.json, a folder holding one, a "
            "SentencePiece .model file, or a Hub name already in the Hugging Face cache")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 of the serialized model (vocabulary in id order, merges), normalizer and pre-tokenizer."""
    digest = hashlib.sha256()
    for part in (tokenizer.model, tokenizer.normalizer, tokenizer.pre_tokenizer):
        digest.update(part.__getstate__() if part is not None else b"null")
        digest.update(b"\0")
    return digest.hexdigest()


def mistral_spm_path() -> Path:
    try:
        path = Path(str(importlib.resources.files(SPM_PACKAGE) / SPM_FILE))
    except ModuleNotFoundError:
        raise TokenizerError(f"the `{SPM_PACKAGE}` package is not installed, so `{MISTRAL_BUILTIN}` cannot be "
                             "built offline; install the project's data packages (make install)") from None
    if not path.is_file():
        raise TokenizerError(f"{path} is missing from the installed {SPM_PACKAGE} package")
    return path


def spm_bpe_tokenizer(model_file: str | Path) -> Tokenizer:
    """A `tokenizers` BPE equal to the Hub conversion of a SentencePiece BPE model (Llama/Mistral style).

    Merges are ranked by the score of the piece they make, as SentencePiece ranks them; ties (the
    whitespace-only pieces, all scored -1e9) keep the order of (left id, right id), as in the Hub's
    files. Ranking merges by piece id instead (what transformers 5.x's plain conversion does) merges
    runs of spaces before words and disagrees with SentencePiece on ~1-5% of documents.
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(Path(model_file).read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise TokenizerError(f"{model_file} is not a SentencePiece model: {exc}") from None
    if proto.trainer_spec.model_type != 2:
        raise TokenizerError(f"{model_file} is a SentencePiece {proto.trainer_spec.model_type} model; only BPE (2) "
                             "models can be converted here; give a tokenizer.json instead")
    if any(p.type == _USER_DEFINED for p in proto.pieces):
        raise TokenizerError(f"{model_file} has user-defined pieces, which this conversion does not handle; "
                             "give a tokenizer.json instead")
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    ranked = []
    for piece in proto.pieces:
        if piece.type != _NORMAL:
            continue
        for cut in range(1, len(piece.piece)):
            left, right = piece.piece[:cut], piece.piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-piece.score, vocab[left], vocab[right], left, right))
    ranked.sort()
    spec = proto.normalizer_spec
    if spec.remove_extra_whitespaces or spec.precompiled_charsmap:
        raise TokenizerError(f"{model_file} normalizes text (extra-whitespace removal or a charsmap); only "
                             "identity-normalized models (Llama/Mistral) are converted here")
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[(r[3], r[4]) for r in ranked],
                              unk_token=proto.trainer_spec.unk_piece, fuse_unk=True,
                              byte_fallback=proto.trainer_spec.byte_fallback))
    steps = [normalizers.Prepend("▁")] if spec.add_dummy_prefix else []
    tokenizer.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tokenizer.add_special_tokens([AddedToken(p.piece, normalized=False, special=True)
                                  for p in proto.pieces if p.type in (_UNKNOWN, _CONTROL)])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if spec.add_dummy_prefix else []))
    return tokenizer


def _special_ids(tokenizer: Tokenizer, config: dict[str, Any]) -> tuple[int | None, int | None]:
    """BOS/EOS ids from a tokenizer_config.json when given, else from the usual token spellings."""

    def lookup(key: str, candidates: tuple[str, ...]) -> int | None:
        token = config.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        for name in ([token] if token else []) + list(candidates):
            token_id = tokenizer.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    return lookup("bos_token", _BOS_CANDIDATES), lookup("eos_token", _EOS_CANDIDATES)


def _from_hub(name: str) -> tuple[Tokenizer, str, dict[str, Any]]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(name, "tokenizer.json")
    except LocalEntryNotFoundError:
        raise TokenizerError(f"tokenizer {name!r} is not in the local Hugging Face cache and the Hub cannot be "
                             f"reached; {offline_options()}") from None
    except (EntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise TokenizerError(f"cannot load tokenizer {name!r} from the Hub ({type(exc).__name__}); "
                             f"{offline_options()}") from None
    config: dict[str, Any] = {}
    try:
        config = json.loads(Path(hf_hub_download(name, "tokenizer_config.json")).read_text())
    except Exception:  # noqa: BLE001 - the config is optional; special tokens fall back to their usual names
        log.debug("%s has no tokenizer_config.json; guessing BOS/EOS from their usual spellings", name)
    return Tokenizer.from_file(path), path, config


def _from_path(path: Path) -> tuple[Tokenizer, str, dict[str, Any]]:
    if path.is_dir():
        config_path = path / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        if (path / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(path / "tokenizer.json")), str(path / "tokenizer.json"), config
        if (path / "tokenizer.model").is_file():
            return spm_bpe_tokenizer(path / "tokenizer.model"), str(path / "tokenizer.model"), config
        raise TokenizerError(f"{path} holds neither tokenizer.json nor tokenizer.model")
    if path.suffix == ".json":
        try:
            return Tokenizer.from_file(str(path)), str(path), {}
        except Exception as exc:  # noqa: BLE001 - the Rust error says what is wrong with the file
            raise TokenizerError(f"{path} is not a tokenizers JSON file: {exc}") from None
    return spm_bpe_tokenizer(path), str(path), {}


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _resolve(name: str) -> tuple[Tokenizer, str, str, dict[str, Any]]:
    """(tokenizer, origin, file it came from, tokenizer config) for a recipe's tokenizer name."""
    if name == MISTRAL_BUILTIN:
        path = mistral_spm_path()
        return spm_bpe_tokenizer(path), f"built from {SPM_PACKAGE}/{SPM_FILE}", str(path), {}
    local = Path(name).expanduser()
    if local.exists():
        tokenizer, file, config = _from_path(local)
        return tokenizer, f"local file {file}", file, config
    if name == MISTRAL_HUB:
        if _is_offline():
            tokenizer, origin, file, config = _resolve(MISTRAL_BUILTIN)
            return tokenizer, f"{origin} (offline stand-in for {MISTRAL_HUB})", file, config
        try:
            tokenizer, file, config = _from_hub(name)
        except TokenizerError as exc:
            log.warning("%s; using the offline build %r, which gives the same ids", exc, MISTRAL_BUILTIN)
            tokenizer, origin, file, config = _resolve(MISTRAL_BUILTIN)
            return tokenizer, f"{origin} (stand-in for {MISTRAL_HUB})", file, config
        return tokenizer, f"hub {name}", file, config
    if name.count("/") != 1 or name.startswith(("/", ".")):
        raise TokenizerError(f"unknown tokenizer {name!r}: not a local path nor a Hub name (org/name); "
                             f"{offline_options()}")
    if _is_offline():
        try:
            tokenizer, file, config = _from_hub(name)
        except TokenizerError:
            raise TokenizerError(f"unknown tokenizer {name!r} while offline (HF_HUB_OFFLINE=1) and not in the "
                                 f"Hugging Face cache; {offline_options()}") from None
        return tokenizer, f"hub cache {name}", file, config
    tokenizer, file, config = _from_hub(name)
    return tokenizer, f"hub {name}", file, config


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str = DEFAULT_TOKENIZER, add_bos: bool = False) -> LoadedTokenizer:
    """The tokenizer for `name`, set up to return `[BOS] ids EOS` for one `encode_batch` call."""
    tokenizer, origin, file, config = _resolve(name)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size < 256:
        raise TokenizerError(f"tokenizer {name!r} ({origin}) has only {vocab_size} tokens: a broken conversion "
                             "(e.g. transformers 5.x LlamaTokenizerFast(vocab_file=...) builds 3)")
    bos_id, eos_id = _special_ids(tokenizer, config)
    if eos_id is None:
        raise TokenizerError(f"tokenizer {name!r} ({origin}) has no recognizable EOS token "
                             f"(tried the config's eos_token and {list(_EOS_CANDIDATES)})")
    if add_bos and bos_id is None:
        raise TokenizerError(f"add_bos is set but tokenizer {name!r} ({origin}) has no BOS token")
    bos, eos = tokenizer.id_to_token(bos_id) if bos_id is not None else None, tokenizer.id_to_token(eos_id)
    info = TokenizerInfo(name=name, vocab_size=vocab_size, bos_id=bos_id, eos_id=eos_id,
                         sha256=sha256_file(file), fingerprint=fingerprint(tokenizer), origin=origin)
    if name == MISTRAL_HUB and origin.startswith("hub"):
        expected = fingerprint(_resolve(MISTRAL_BUILTIN)[0])
        if info.fingerprint != expected:
            log.warning("the Hub's %s tokenizer differs from the offline build %r: ids may differ from the "
                        "documented ones (fingerprints %s vs %s)", MISTRAL_HUB, MISTRAL_BUILTIN,
                        info.fingerprint[:12], expected[:12])
    tokenizer.encode_special_tokens = True
    template = (f"{bos} $A {eos}" if add_bos else f"$A {eos}")
    specials = [(eos, eos_id)] + ([(bos, bos_id)] if add_bos and bos != eos else [])
    tokenizer.post_processor = processors.TemplateProcessing(single=template, special_tokens=specials)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return LoadedTokenizer(tokenizer, info)


def encode_documents(loaded: LoadedTokenizer, texts: list[str]) -> tuple[pa.ListArray, np.ndarray]:
    """Token ids of each text with EOS (and BOS) as an Arrow list array, plus token counts (int32).

    The encoding runs in Rust (`encode_batch_fast`, no offsets); Python only moves each id list into
    one flat numpy buffer through C iterators, with no per-token Python code.
    """
    encodings = loaded.tokenizer.encode_batch_fast(texts, add_special_tokens=True)
    id_lists = [encoding.ids for encoding in encodings]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    offsets = np.zeros(len(id_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise TokenizerError(f"{offsets[-1]:,} tokens in one batch overflow Arrow's list offsets; lower batch_size")
    numpy_type = np.uint16 if loaded.info.token_type == pa.uint16() else np.uint32
    flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=numpy_type, count=int(offsets[-1]))
    array = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat))
    return array, lengths.astype(np.int32)


def decode(loaded: LoadedTokenizer, ids: list[int] | np.ndarray) -> str:
    """Text of token ids, without BOS/EOS (the inverse of the normalization up to `▁` -> space)."""
    return loaded.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)
