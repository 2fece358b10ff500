"""The Zyda-1 filter against the original implementation's oracle, its fast parts against plain `re`,
bad input, and the word-list download/cache/verification paths."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from filters import wordlists
from filters.charclass import count_word_runs, text_stats
from filters.literal_scan import LiteralScanner
from filters.pattern_counter import PatternCounter, as_codepoints
from filters.wordlists import WORD_LIST_NAMES, WordListError, load_word_lists
from filters.zyda1 import FEATURES_KEY, PATTERNS, TRANSFORM_RUNS, Zyda1Filter, Zyda1Scorer, transform

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "zyda1"
needs_reference = pytest.mark.skipif(not (REFERENCE / "oracle.parquet").is_file(),
                                     reason=f"Zyda-1 oracle and word lists not found in {REFERENCE} (../shared)")


@pytest.fixture(scope="module")
def word_lists() -> dict[str, list[str]]:
    if not (REFERENCE / "oracle.parquet").is_file():
        pytest.skip(f"Zyda-1 word lists not found in {REFERENCE} (../shared)")
    return load_word_lists(REFERENCE)


@pytest.fixture(scope="module")
def scorer(word_lists: dict[str, list[str]]) -> Zyda1Scorer:
    return Zyda1Scorer(word_lists)


@pytest.fixture(scope="module")
def oracle() -> list[dict]:
    if not (REFERENCE / "oracle.parquet").is_file():
        pytest.skip(f"Zyda-1 oracle not found in {REFERENCE} (../shared)")
    return pq.read_table(REFERENCE / "oracle.parquet").to_pylist()


# ---- the oracle ------------------------------------------------------------------------------
@needs_reference
def test_oracle_decisions_and_features_match_the_original(scorer: Zyda1Scorer, oracle: list[dict]) -> None:
    mismatches = []
    for row in oracle:
        features, transformed = scorer.features(row["text"])
        reason = scorer.decide(features, len(transformed))
        expected = {"transformed": row["transformed_text"], "reason": row["drop_reason"], "keep": row["keep"],
                    "substrings_counts": row["substrings_counts"],
                    "pattern_counts": json.loads(row["pattern_counts"]),
                    "word_list_counts": json.loads(row["word_list_counts"])}
        got = {"transformed": transformed, "reason": reason, "keep": reason is None,
               "substrings_counts": features.substrings_counts, "pattern_counts": features.pattern_counts,
               "word_list_counts": features.word_list_counts}
        floats_ok = all(abs(getattr(features, k) - row[k]) <= 1e-9
                        for k in ("mean_word_length", "fraction_non_alphanumeric", "fraction_numerical"))
        if got != expected or not floats_ok:
            mismatches.append((row["id"], row["category"]))
    assert not mismatches, f"{len(mismatches)} of {len(oracle)} disagree with the oracle: {mismatches[:10]}"
    assert sum(r["keep"] for r in oracle) == 1587


@needs_reference
def test_filter_on_documents(word_lists: dict[str, list[str]], oracle: list[dict]) -> None:
    rows = [r for r in oracle if r["text"] != r["transformed_text"]][:20] + oracle[:20]
    keep_raw = Zyda1Filter(word_lists=word_lists, keep_transformed=False)
    for row in rows:
        doc = Document(text=row["text"], id=row["id"])
        result = Zyda1Filter(word_lists=word_lists).filter(doc)
        assert result is True if row["keep"] else result == (False, row["drop_reason"])
        assert doc.text == row["transformed_text"]
        assert set(doc.metadata[FEATURES_KEY]) == {"mean_word_length", "fraction_non_alphanumeric",
                                                   "fraction_numerical", "substrings_counts", "pattern_counts",
                                                   "word_list_counts"}
        raw_doc = Document(text=row["text"], id=row["id"])
        assert keep_raw.filter(raw_doc) == result
        assert raw_doc.text == row["text"]


# ---- the fast parts against the straightforward ones ---------------------------------------
_PIECES = ["xml", "<?", "xml version=", "lorem ipsum", "https://", "<", ">", '":', "www", ".", "\ufffd", "4438x",
           " sex ", " penis ", " fuck ", "|", "\n", " nr.", " г.", " кг.", "a", "b", " ", "  ", "...", ", ..",
           ",", "Vol.", " Ep.", "黄色电影", "一本道", "aaaa", "\U0001F600", "\x00", "\t", "-", "\\", "\xa0", "9"]


def _random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["", " ", "\ufffd" * 7, "|  \n", "x nr.", "a g. г. \n", " a" * 30, " ..." * 12, " ...." * 12]
    for _ in range(count):
        texts.append("".join(rng.choice(_PIECES) * rng.choice([1, 1, 1, 2, 9, 12, 25]) for _ in range(rng.randint(1, 60))))
    return texts


@needs_reference
def test_pattern_counter_equals_one_findall_per_entry(word_lists: dict[str, list[str]]) -> None:
    entries = list(PATTERNS) + [w for name in WORD_LIST_NAMES for w in word_lists[name]] + ["", "a|b", "(?i)XML"]
    counter = PatternCounter(entries)
    for text in _random_texts(0, 400):
        assert counter.counts(text) == [len(re.findall(p, text)) for p in entries], repr(text)


def test_literal_scanner_equals_str_count() -> None:
    literals = ["aa", "aaa", "ab", "ba", "abab", "\ufffd\ufffd\ufffd", "4438x", "a", "\U0001F600a"]
    scanner = LiteralScanner(literals)
    rng = random.Random(1)
    for _ in range(300):
        text = "".join(rng.choice(["a", "b", "\ufffd", "4438x", "\U0001F600", "\ud800"]) for _ in range(rng.randint(0, 40)))
        assert scanner.counts(as_codepoints(text)).tolist() == [text.count(lit) for lit in literals], repr(text)


def _sequential_transform(text: str) -> str:
    for char, run, replacement in TRANSFORM_RUNS:
        text = re.sub(re.escape(char) * run + "+", replacement.replace("\\", "\\\\"), text)
    return text


def test_transform_equals_the_sequential_substitutions() -> None:
    assert transform("\\" * 19) == "\\" * 19 and transform("\\" * 20) == "\\\\"
    assert transform("-" * 9) == "-" * 9 and transform("a" + "-" * 10 + "b") == "a-b"
    assert transform(" " * 39 + "x" + " " * 40) == " " * 39 + "x "
    for text in _random_texts(2, 300):
        assert transform(text) == _sequential_transform(text), repr(text)


def test_text_stats_and_word_runs_agree_with_re() -> None:
    rng = random.Random(3)
    alphabet = ["a", "a", " ", "\n", "1", "٣", "_", "-", "/", "\\", ".", "\u3000", "\ud800", "\U0001F600", "é", "\x1c"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) * rng.choice([1, 1, 3, 7, 8]) for _ in range(rng.randint(0, 30)))
        codepoints = as_codepoints(text)
        longest = max((len(m.group()) for m in re.finditer(r"(.)\1*", text, re.S)), default=0)
        assert text_stats(codepoints) == (len(re.findall(r"\s|-|/|\\|\.", text)), len(re.findall(r"[^\w\s]", text)),
                                          len(re.findall(r"\d", text)), longest), repr(text)
        assert count_word_runs(codepoints, 7) == len(re.findall(r"(\w)\1{6,}", text)), repr(text)


# ---- bad input -------------------------------------------------------------------------------
@needs_reference
@pytest.mark.parametrize("text, reason", [
    ("", "min_length"),
    (" \n\t " * 200, "min_mean_word_length"),
    ("\x00" * 300, "max_mean_word_length"),
    ("text with a NUL\x00 byte inside it " * 10, None),
    ("w\ud800\ud800\ud800 " * 100, "max_fraction_non_alphanumeric"),
    ("\ud83d" + "plain words here " * 20, None),
])
def test_bad_input_gets_a_decision_and_a_reason(word_lists: dict[str, list[str]], text: str, reason: str | None) -> None:
    doc = Document(text=text, id="bad")
    result = Zyda1Filter(word_lists=word_lists).filter(doc)
    assert result == (True if reason is None else (False, reason))
    assert FEATURES_KEY in doc.metadata


@needs_reference
def test_ten_megabyte_document(word_lists: dict[str, list[str]]) -> None:
    text = ("An ordinary sentence of English words, with a comma. " * 190_000)[:10_000_000]
    doc = Document(text=text + "-" * 5000, id="big")
    assert Zyda1Filter(word_lists=word_lists).filter(doc) is True
    assert doc.text == text + "-"


# ---- word lists ------------------------------------------------------------------------------
@pytest.fixture
def served_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local copy of the upstream folder (served as file://) and an empty user cache."""
    if not (REFERENCE / "oracle.parquet").is_file():
        pytest.skip(f"Zyda-1 word lists not found in {REFERENCE} (../shared)")
    served = tmp_path / "upstream"
    served.mkdir()
    for name in WORD_LIST_NAMES:
        shutil.copy(REFERENCE / name, served / name)
    monkeypatch.setenv("ZYDA_CACHE_DIR", str(tmp_path / "cache"))
    return served


def test_download_verifies_and_caches(served_lists: Path) -> None:
    lists = load_word_lists(base_url=served_lists.as_uri())
    assert lists == load_word_lists(REFERENCE)
    assert sorted(p.name for p in wordlists.cache_dir().iterdir()) == sorted(WORD_LIST_NAMES)

    def no_network(url: str) -> bytes:
        raise AssertionError(f"fetched {url} although it is cached")

    assert load_word_lists(fetch=no_network) == lists


def test_download_with_wrong_sha256_is_refused_and_not_cached(served_lists: Path) -> None:
    (served_lists / "sexual_word_list.json").write_text(json.dumps({"words": [" tampered "]}))
    with pytest.raises(WordListError, match="sexual_word_list.json has sha256 .* expected 735092ac"):
        load_word_lists(base_url=served_lists.as_uri())
    assert not (wordlists.cache_dir() / "sexual_word_list.json").exists()


def test_corrupt_cache_entry_is_downloaded_again(served_lists: Path) -> None:
    load_word_lists(base_url=served_lists.as_uri())
    (wordlists.cache_dir() / "zh_pornsignals.json").write_text("{}")
    assert load_word_lists(base_url=served_lists.as_uri()) == load_word_lists(REFERENCE)


def test_offline_without_cache(served_lists: Path, caplog: pytest.LogCaptureFixture,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str) -> bytes:
        raise OSError("network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ZYDA_OFFLINE", raising=False)
    with pytest.raises(WordListError, match="could not download .*word_lists_dir"):
        load_word_lists(base_url="https://example.invalid/lists/", fetch=offline)
    with pytest.raises(WordListError, match="word_lists_dir"):
        Zyda1Filter(word_lists_url=(served_lists / "missing").as_uri())
    optional = Zyda1Filter(word_lists_url=(served_lists / "missing").as_uri(), require_word_lists=False)
    assert optional.word_lists_skipped and "word-list rules skipped" in caplog.text
    text = "a quite ordinary text about sex and nothing else in particular, " * 5
    doc = Document(text=text, id="x")
    assert optional.filter(doc) is True
    assert doc.metadata[FEATURES_KEY]["word_list_counts"] == {}
    with_lists = Zyda1Filter(word_lists_dir=REFERENCE)
    assert with_lists.filter(Document(text=text, id="x")) == (False, "word_list_fraction:cursed_substrings.json")


def test_no_network_download_when_offline(served_lists: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def network(url: str) -> bytes:
        raise AssertionError(f"fetched {url} although downloads are off")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WordListError, match="downloads are off"):
        load_word_lists(fetch=network)
    assert load_word_lists(base_url=served_lists.as_uri()) == load_word_lists(REFERENCE)  # file:// is local


def test_folder_is_verified_unless_told_otherwise(served_lists: Path) -> None:
    (served_lists / "profanity_word_list.json").write_text(json.dumps({"words": [" darn "]}))
    with pytest.raises(WordListError, match="verify_word_lists: false"):
        load_word_lists(served_lists)
    assert load_word_lists(served_lists, verify=False)["profanity_word_list.json"] == [" darn "]
    (served_lists / "cursed_substrings.json").write_text("not json")
    with pytest.raises(WordListError, match="not a Zyda-1 word list"):
        load_word_lists(served_lists, verify=False)
    (served_lists / "cursed_substrings.json").unlink()
    with pytest.raises(WordListError, match="cursed_substrings.json not found"):
        load_word_lists(served_lists, verify=False)


def test_codepoints_roundtrip_for_astral_and_surrogates() -> None:
    text = "a\U0001F600\ud800z"
    assert as_codepoints(text).tolist() == [ord(c) for c in text]
    assert np.asarray(as_codepoints("")).size == 0


@needs_reference
def test_runs_as_a_datatrove_pipeline_step(word_lists: dict[str, list[str]], oracle: list[dict]) -> None:
    rows = oracle[:200]
    step = Zyda1Filter(word_lists=word_lists)
    kept = list(step.run(iter(Document(text=r["text"], id=r["id"]) for r in rows)))
    assert [d.id for d in kept] == [r["id"] for r in rows if r["keep"]]
    stats = step.stats.to_dict()["stats"]
    assert stats["dropped"] == sum(not r["keep"] for r in rows)
    for reason in {r["drop_reason"] for r in rows if not r["keep"]}:
        assert stats[f"dropped_{reason}"] == sum(r["drop_reason"] == reason for r in rows)
