"""Ingest throughput (MB/s of text per core) and its overhead against a plain pyarrow read + write.

Anchor, measured in the same run on the same files: read the same columns with pyarrow (Parquet,
or pyarrow.json over the decompressed stream for jsonl.zst) and write zstd Parquet. Target:
ingest / anchor time <= 1.3. One core (local executor), page-length (~2.5 KB) documents.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

# Run as a script, this folder would come first on sys.path and its files (tokenize.py, ...) would
# shadow the standard library: import from the repository instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

from pipeline.manifest import load_recipe  # noqa: E402
from pipeline.runner import run_recipe  # noqa: E402
from tests.upstream_fixtures import LAYOUT, page_text, write_recipe  # noqa: E402


def make_data(root: Path, files: int, rows: int) -> None:
    """Page-length documents in the FineWeb-Edu (parquet) and DCLM (jsonl.zst) layouts."""
    for manifest in ("fineweb-edu-score-2", "dclm-baseline-1.0"):
        pattern, _, writer = LAYOUT[manifest]
        for i in range(files):
            writer(root / pattern.format(i=i), i, rows, page_text)


def anchor(root: Path, out: Path, manifest: str) -> float:
    from pipeline.manifest import load_source

    source = load_source(Path(__file__).resolve().parents[1] / "manifests" / "sources" / f"{manifest}.yaml")
    columns = [source.text_field, *source.keep_columns]
    files = sorted(root.glob(LAYOUT[manifest][1]))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, path in enumerate(files):
        if manifest.startswith("fineweb"):
            table = pq.read_table(path, columns=columns)
        else:
            with pa.input_stream(str(path), compression="zstd") as stream:
                table = pj.read_json(stream).select(columns)
        pq.write_table(table, out / f"{i}.parquet", compression="zstd")
    return time.perf_counter() - start


def text_mb(root: Path, manifest: str) -> float:
    workdir_texts = 0
    for path in sorted(root.glob(LAYOUT[manifest][1])):
        if manifest.startswith("fineweb"):
            workdir_texts += sum(len(t.encode()) for t in pq.read_table(path, columns=["text"])["text"].to_pylist())
        else:
            with pa.input_stream(str(path), compression="zstd") as stream:
                workdir_texts += sum(len(t.encode()) for t in pj.read_json(stream)["text"].to_pylist())
    return workdir_texts / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zyda-bench-ingest-"))
    try:
        make_data(tmp / "data", args.files, args.rows)
        print(f"{'source':<22}{'MB text':>9}{'ingest MB/s':>13}{'pyarrow MB/s':>14}{'ratio':>8}")
        worst = 0.0
        for manifest in ("fineweb-edu-score-2", "dclm-baseline-1.0"):
            recipe_path = write_recipe(tmp / f"recipe-{manifest}", tmp / "data", [{"id": "ingest", "type": "ingest"}],
                                       sources=[manifest])
            ours, base = [], []
            for r in range(args.repeat):
                start = time.perf_counter()
                run_recipe(load_recipe(recipe_path), str(tmp / f"w-{manifest}-{r}"), executor="local",
                           interactive=False)
                ours.append(time.perf_counter() - start)
                base.append(anchor(tmp / "data", tmp / f"anchor-{manifest}-{r}", manifest))
            mb = text_mb(tmp / "data", manifest)
            ratio = min(ours) / min(base)
            worst = max(worst, ratio)
            print(f"{manifest:<22}{mb:9.1f}{mb / min(ours):13.1f}{mb / min(base):14.1f}{ratio:8.2f}")
        print(f"overhead ratio (worst) {worst:.2f}  target <= 1.3  {'OK' if worst <= 1.3 else 'MISSED'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
