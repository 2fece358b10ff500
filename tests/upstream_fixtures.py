"""Tiny files in the exact upstream schemas of the four Zyda-2 sources, and recipes over them."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
import zstandard

REPO = Path(__file__).resolve().parents[1]
WORDS = ("data model stage source shard token filter corpus recipe worker cluster record parquet "
         "signature bucket component ranking quality classifier language english document").split()


TextFn = Callable[[str, int, int], str]


def short_text(source: str, file_index: int, row: int) -> str:
    words = [WORDS[(row * 7 + i * 3 + file_index) % len(WORDS)] for i in range(40 + row % 30)]
    return f"{source} file {file_index} row {row}. " + " ".join(words)


def page_text(source: str, file_index: int, row: int) -> str:
    """About 2.5 KB, the median web page of these corpora (for benchmarks)."""
    return " ".join(WORDS[(row * 7 + k * 3 + file_index) % len(WORDS)] for k in range(300 + row % 200))


def write_fineweb(path: Path, file_index: int, rows: int, text: TextFn = short_text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    score = [2.0 + (r % 7) * 0.45 for r in range(rows)]
    pq.write_table(pa.table({
        "text": [text("fwe", file_index, r) for r in range(rows)],
        "id": [f"<urn:uuid:{file_index:04d}-{r:08d}>" for r in range(rows)],
        "dump": ["CC-MAIN-2024-10"] * rows, "url": [f"https://example.org/{file_index}/{r}" for r in range(rows)],
        "date": ["2024-02-21T00:00:00Z"] * rows, "file_path": [f"s3://commoncrawl/{file_index}.warc.gz"] * rows,
        "language": ["en"] * rows, "language_score": [0.95] * rows,
        "token_count": pa.array([40 + r % 30 for r in range(rows)], pa.int64()),
        "score": score, "int_score": pa.array([int(round(s)) for s in score], pa.int64())}), path)


def write_zyda(path: Path, file_index: int, rows: int, text: TextFn = short_text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "text": [text("zyda", file_index, r) for r in range(rows)],
        "source": ["refinedweb"] * rows,
        "filtering_features": [orjson.dumps({"mean_word_length": 5.1, "row": r}).decode() for r in range(rows)],
        "source_other": [orjson.dumps({"url": f"https://z.example/{r}"}).decode() for r in range(rows)]}), path)


def dclm_record(file_index: int, row: int, text: TextFn = short_text) -> dict:
    return {"text": text("dclm", file_index, row), "url": f"https://d.example/{row}", "warcinfo": "isPartOf: CC",
            "metadata": {"Content-Length": str(100 + row), "WARC-Record-ID": f"<urn:{row}>"},
            "language_id_whole_page_fasttext": {"en": 0.93},
            "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob": 0.5 + row % 5 / 10,
            "bff_contained_ngram_count_before_dedupe": row % 3, "previous_word_count": 40 + row}


def dolma_record(file_index: int, row: int, text: TextFn = short_text) -> dict:
    return {"id": f"dolma-{file_index}-{row}", "text": text("dolma", file_index, row), "source": "common-crawl",
            "added": "2024-04-01T00:00:00.000Z", "created": "2019-01-01T00:00:00.000Z",
            "metadata": {"url": f"https://o.example/{row}", "length": row}}


def json_lines(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def write_dclm(path: Path, file_index: int, rows: int, text: TextFn = short_text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(json_lines([dclm_record(file_index, r, text) for r in range(rows)])))


def write_dolma(path: Path, file_index: int, rows: int, text: TextFn = short_text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json_lines([dolma_record(file_index, r, text) for r in range(rows)]), mtime=0))


LAYOUT = {
    "fineweb-edu-score-2": ("fineweb-edu-score-2/data/CC-MAIN-2024-10/train-{i:05d}.parquet",
                            "fineweb-edu-score-2/data/*/*.parquet", write_fineweb),
    "dclm-baseline-1.0": ("dclm/global-shard_01_of_10/local-shard_0_of_10/shard_{i:08d}_processed.jsonl.zst",
                          "dclm/global-shard_*_of_10/local-shard_*_of_10/*.jsonl.zst", write_dclm),
    "zyda-1": ("zyda/data/zyda_no_starcoder/zyda_refinedweb/train-{i:05d}.parquet",
               "zyda/data/zyda_no_starcoder/*/*.parquet", write_zyda),
    "dolma-v1_7-cc": ("dolma/cc_en_head/cc_en_head-{i:04d}.json.gz", "dolma/cc_en_*/*.json.gz", write_dolma),
}


def write_upstream(root: Path, files: int = 2, rows: int = 30) -> Path:
    """`files` files of `rows` records per source under `root`."""
    for pattern, _, writer in LAYOUT.values():
        for i in range(files):
            writer(root / pattern.format(i=i), i, rows)
    return root


def write_recipe(folder: Path, data_root: Path, stages: list[dict], name: str = "fixture",
                 execution: dict | None = None, sources: list[str] | None = None) -> Path:
    """A recipe over copies of the real source manifests, pointed at `data_root`."""
    (folder / "sources").mkdir(parents=True, exist_ok=True)
    refs = []
    for manifest in sources or list(LAYOUT):
        data = yaml.safe_load((REPO / "manifests" / "sources" / f"{manifest}.yaml").read_text())
        data.pop("url_list", None)
        data.pop("url_pattern", None)
        data["uri"] = str(data_root / LAYOUT[manifest][1])
        (folder / "sources" / f"{manifest}.yaml").write_text(yaml.safe_dump(data))
        refs.append({"manifest": f"sources/{manifest}.yaml"})
    recipe = {"name": name, "seed": 7, "sources": refs, "stages": stages,
              "mixture": {"dclm": 4.0, "fwe3": 4.0, "zyda": 0.16, "dolma_cc": 0.24}}
    if execution:
        recipe["execution"] = execution
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def tree_bytes(root: Path, sub: str) -> dict[str, bytes]:
    """Every file under root/sub by relative path: to compare two runs byte for byte."""
    base = root / sub
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
