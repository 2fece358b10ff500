"""Dedup core: exact modular arithmetic, shingling semantics, normalizations, signatures, keys."""

from __future__ import annotations

import string

import numpy as np
import pyarrow as pa
import pytest

from dedup.config import MinHashSettings, detection_probability, preset_config, s_curve_threshold
from dedup.hashing import MERSENNE61, mulmod61
from dedup.normalize import normalize_simple, normalize_zyda1
from dedup.signatures import compute_signatures, exact_keys, jaccard, shingle_sets
from dedup.synthetic import edit_words, pages

P = (1 << 61) - 1


def test_mulmod61_is_exact_against_python_integers():
    rng = np.random.default_rng(0)
    xs = list(rng.integers(0, P, size=2000, dtype=np.uint64)) + [np.uint64(P - 1), np.uint64(0), np.uint64(1),
                                                                 np.uint64(2**32), np.uint64(2**61 - 2)]
    ys = list(rng.integers(0, P, size=2000, dtype=np.uint64)) + [np.uint64(P - 1)] * 5
    for x, y in zip(xs, ys):
        assert int(mulmod61(x, y)) == (int(x) * int(y)) % P


def _python_kgrams(text: str, k: int) -> set[str]:
    return {text[i:i + k] for i in range(len(text) - k + 1)} if len(text) >= k else {text}


@pytest.mark.parametrize("shingle_hash", ["poly61", "xxh64"])
def test_character_shingles_are_the_distinct_k_grams(shingle_hash):
    config = preset_config("zyda2", shingle_hash=shingle_hash)
    texts = pages(20, np.random.default_rng(1), 800) + ["short", "", "ééé ünïcødé ✓ 𝄞 text", "a" * 100]
    sets = shingle_sets(pa.array(texts), config)
    for text, hashes in zip(texts, sets):
        assert hashes.size == len(_python_kgrams(text, 25))  # no collisions, no missing window
        assert np.all(hashes < MERSENNE61)


def test_both_shingle_hashes_give_the_same_true_jaccard():
    rng = np.random.default_rng(2)
    base = pages(10, rng, 1500)
    edited = [edit_words(t, 0.05, rng) for t in base]
    for preset in ("zyda2", "datatrove"):
        fast = shingle_sets(pa.array(base + edited), preset_config(preset))
        ref = shingle_sets(pa.array(base + edited), preset_config(preset, shingle_hash="xxh64"))
        for i in range(10):
            assert jaccard(fast[i], fast[10 + i]) == pytest.approx(jaccard(ref[i], ref[10 + i]), abs=1e-12)


def test_kernel_simple_normalization_equals_the_python_reference():
    texts = ["Hello,   World! It's “quoted” — and\u00a0non-breaking…\tTabs\n\nNEW", "", "   ", "¿Qué tal? ¡Bien!",
             "Ünïcode NFC: e\u0301 vs é", "a.b,c;d"]
    for shingle in ("words", "chars"):
        config = preset_config("datatrove", shingle=shingle, k=3)
        direct = shingle_sets(pa.array(texts), config)
        on_reference = shingle_sets(pa.array([normalize_simple(t) for t in texts]),
                                    preset_config("datatrove", shingle=shingle, k=3, normalize="none"))
        for a, b in zip(direct, on_reference):
            assert np.array_equal(a, b)
    assert normalize_simple(texts[0]) == "hello world its quoted and nonbreaking tabs new"


def test_zyda1_normalization_follows_the_zyda1_code():
    # ftfy NFC, lowercase, string.punctuation deleted (so "It's" -> "its"), nltk treebank words.
    assert normalize_zyda1("Hello,   WORLD!  It's  cannot-stop\n") == "hello world its cannotstop"
    assert normalize_zyda1("schÃ¶n gonna") == "schön gon na"  # ftfy repairs mojibake; treebank splits
    assert not set(normalize_zyda1("a; b: (c) [d] {e}")) & set(string.punctuation)


def test_short_and_empty_documents_get_one_shingle_not_an_all_max_signature():
    config = preset_config("zyda1")
    texts = ["one two three", "one two three", "four five", "", "   "]
    sigs = compute_signatures(pa.array(texts), config).sigs
    assert not np.any(sigs == np.uint64(2**64 - 1))
    assert np.array_equal(sigs[0], sigs[1])
    assert not np.array_equal(sigs[0], sigs[2])
    assert [s.size for s in shingle_sets(pa.array(texts), config)] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("permutation", ["mersenne61", "affine64"])
def test_signature_agreement_estimates_true_jaccard(permutation):
    rng = np.random.default_rng(3)
    base = pages(60, rng, 1500)
    edited = [edit_words(t, f, rng) for t, f in zip(base, np.linspace(0.0, 0.3, 60))]
    config = preset_config("datatrove", permutation=permutation, bands=16, rows=16)
    sigs = compute_signatures(pa.array(base + edited), config).sigs
    sets = shingle_sets(pa.array(base + edited), config)
    errors = []
    for i in range(60):
        true = jaccard(sets[i], sets[60 + i])
        estimate = float(np.mean(sigs[i] == sigs[60 + i]))
        sigma = max(np.sqrt(true * (1 - true) / config.num_hashes), 1 / config.num_hashes)
        errors.append((estimate - true) / sigma)
    assert np.mean(np.abs(errors) <= 3) >= 0.95
    assert abs(np.mean(errors)) < 0.5  # unbiased


def test_band_keys_equal_exactly_when_band_values_are_equal():
    config = preset_config("zyda2")
    rng = np.random.default_rng(4)
    base = pages(30, rng, 1500)
    texts = base + [edit_words(t, 0.01, rng) for t in base]
    result = compute_signatures(pa.array(texts), config)
    bands = result.sigs.reshape(len(texts), config.bands, config.rows)
    for i in range(30):
        same_band = np.all(bands[i] == bands[30 + i], axis=1)
        assert np.array_equal(same_band, result.keys[i] == result.keys[30 + i])


def test_presets_and_s_curve():
    assert s_curve_threshold(8, 16) == pytest.approx(0.856, abs=0.001)
    assert s_curve_threshold(32, 4) == pytest.approx(0.383, abs=0.001)
    assert float(detection_probability(s_curve_threshold(14, 8), 14, 8)) == pytest.approx(0.5)
    zyda1 = preset_config("zyda1")
    assert (zyda1.shingle, zyda1.k, zyda1.normalize, zyda1.num_hashes) == ("words", 13, "zyda1", 128)
    assert "0.856" in preset_config("zyda2").describe()
    assert MinHashSettings(preset="zyda2", bands=4).resolved(0).rows == 16
    with pytest.raises(ValueError, match="num_hashes"):
        MinHashSettings(preset="zyda2", num_hashes=100)
    with pytest.raises(ValueError, match="give a preset"):
        MinHashSettings(shingle="words")


def test_exact_keys():
    keys = exact_keys(pa.array(["Hello, World", "hello world", "Hello, World", "Hello, World!", ""]), "none", 0)
    assert np.array_equal(keys[0], keys[2]) and not np.array_equal(keys[0], keys[1])
    assert not np.array_equal(keys[0], keys[3])
    normalized = exact_keys(pa.array(["Hello,  World", "hello world", " hello   world! "]), "simple", 0)
    assert np.array_equal(normalized[0], normalized[1]) and np.array_equal(normalized[1], normalized[2])


def test_bad_input_does_not_crash():
    config = preset_config("zyda2")
    huge = "word " * 2_000_000  # 10 MB
    invalid = pa.array([b"\xff\xfe broken \xc3 utf-8 \x80\x80", b"ok text", b""], type=pa.binary())
    assert compute_signatures(pa.array([huge, "   ", ""]), config).keys.shape == (3, 8)
    assert compute_signatures(invalid, config).keys.shape == (3, 8)
    assert compute_signatures(invalid, preset_config("datatrove")).keys.shape == (3, 14)
    assert compute_signatures(pa.array([None, "x"], pa.string()), config).keys.shape == (2, 8)


def test_zyda1_fast_tokenizer_path_equals_nltk():
    from nltk.tokenize import word_tokenize

    from dedup.normalize import _WHITESPACE, _ZYDA1_PUNCT, treebank_words

    samples = pages(40, np.random.default_rng(9), 600) + [
        "I cannot go, gonna wanna gotta lemme gimme whaddya whatcha more'n 'tis d'ye",
        "“Curly” quotes — em dash – en dash ‘single’ «guillemets» „low” “cannot”—gonna‒x―y", "Numbers 3.88 and 3,36; $5 @home #tag"]
    for text in samples:
        normalized = _WHITESPACE.sub(" ", text.lower().translate(_ZYDA1_PUNCT).strip())
        assert treebank_words(normalized) == word_tokenize(normalized, preserve_line=True)
