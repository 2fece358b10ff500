"""MinHash dedup benchmarks on one core: signatures, the whole pipeline against datatrove, scaling.

1. Signatures (documents/s, same page-length documents, same shingling, ratios from this run):
   ours vs datasketch `MinHash.update_batch` (num_perm=128; word 5-grams and character 25-grams)
   and vs datatrove's `MinhashDedupSignature` (word 5-grams, 14 x 8; its per-document
   get_shingles + get_signature). Targets: >= 10x datasketch, >= 3x datatrove.
2. Whole fuzzy dedup, Parquet in and Parquet out (kept + removed), word 5-grams, 14 bands x 8 rows:
   our minhash -> lsh -> components -> dedup_remove stages vs datatrove's four MinHash stages
   (signature, buckets, cluster, filter) on LocalPipelineExecutor with one worker. Target >= 15x;
   the overlap of removed ids is printed. Default 8k documents; `--full` runs the issue's 80k.
3. Scaling: N and 4N documents with 4x the input parts and 4x the key/edge partitions, every task
   in its own forked process: time, and peak RSS per task (absolute and above the parent's) for
   each stage. Targets: time ratio <= 4.5, peak RSS per lsh / components task within 1.5x.

The process pins itself to one CPU; numba compiles (or loads its cache) before any timing.

    python bench/dedup.py [--signature-docs 2000] [--pipeline-docs 8000 | --full] [--scale-docs 5000]
                          [--skip-datatrove-pipeline] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Run as a script, this folder would come first on sys.path and its files (tokenize.py, ...) would
# shadow the standard library: import from the repository instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

import multiprocessing  # noqa: E402
import resource  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from dedup.config import preset_config  # noqa: E402
from dedup.normalize import normalize_simple  # noqa: E402
from dedup.signatures import compute_signatures  # noqa: E402
from dedup.synthetic import pages, planted_corpus  # noqa: E402


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_rate(count: int, function: Callable[[], Any], repeats: int = 2) -> float:
    """Documents per second of `function` over `count` documents (best of `repeats` CPU-time runs)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return count / best


# ---- 1. signatures ------------------------------------------------------------------------------
def word_grams(text: str, k: int) -> list[bytes]:
    words = normalize_simple(text).split()
    if len(words) < k:
        return [" ".join(words).encode()]
    return [" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)]


def char_grams(text: str, k: int) -> list[bytes]:
    if len(text) < k:
        return [text.encode()]
    return [text[i:i + k].encode() for i in range(len(text) - k + 1)]


def bench_signatures(docs: int, seed: int) -> None:
    from datasketch import MinHash
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    texts = pages(docs, np.random.default_rng(seed), 2500)
    column = pa.array(texts)
    print(f"\n== signatures: {docs} documents, {np.mean([len(t) for t in texts]):.0f} chars on average, one core")
    words128 = preset_config("datatrove", bands=16, rows=8)
    chars128 = preset_config("zyda2")
    for config in (words128, chars128, preset_config("datatrove"), preset_config("zyda2", permutation="mersenne61")):
        compute_signatures(column[:8], config)  # compile / load the numba cache

    def datasketch_rate(grams: Callable[[str], list[bytes]], subset: int) -> float:
        def run() -> None:
            for text in texts[:subset]:
                sketch = MinHash(num_perm=128)
                sketch.update_batch(grams(text))
        return best_rate(subset, run, repeats=1)

    rows = []
    ours_words = best_rate(docs, lambda: compute_signatures(column, words128))
    ours_words_mersenne = best_rate(docs, lambda: compute_signatures(
        column, preset_config("datatrove", bands=16, rows=8, permutation="mersenne61")))
    ds_words = datasketch_rate(lambda t: word_grams(t, 5), min(docs, 1000))
    rows.append(("word 5-grams, 128 hashes", "datasketch update_batch", ours_words, ds_words))
    ours_chars = best_rate(docs, lambda: compute_signatures(column, chars128))
    ours_chars_mersenne = best_rate(docs, lambda: compute_signatures(
        column, preset_config("zyda2", permutation="mersenne61")))
    ds_chars = datasketch_rate(lambda t: char_grams(t, 25), min(docs, 300))
    rows.append(("char 25-grams, 128 hashes", "datasketch update_batch", ours_chars, ds_chars))

    with tempfile.TemporaryDirectory() as folder:
        stage = MinhashDedupSignature(output_folder=folder, config=MinhashConfig(n_grams=5, num_buckets=14,
                                                                                   hashes_per_bucket=8))
        subset = min(docs, 500)
        stage.get_shingles(texts[0])  # load spaCy before timing

        def datatrove() -> None:
            for text in texts[:subset]:
                stage.get_signature(stage.get_shingles(text))
        dt_rate = best_rate(subset, datatrove, repeats=1)
    ours_dt = best_rate(docs, lambda: compute_signatures(column, preset_config("datatrove")))
    rows.append(("word 5-grams, 14 x 8", "datatrove MinhashDedupSignature", ours_dt, dt_rate))
    for name, other, ours, theirs in rows:
        print(f"  {name:28s} ours {ours:9.0f} docs/s   {other} {theirs:7.0f} docs/s   ratio {ours / theirs:6.1f}x")
    print(f"  (ours with mersenne61 permutations instead of the default affine64: word 5-grams "
          f"{ours_words_mersenne:.0f} docs/s, char 25-grams {ours_chars_mersenne:.0f} docs/s)")


# ---- 2. whole pipeline vs datatrove ------------------------------------------------------------
def write_parts(table: pa.Table, folder: Path, parts: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for index in range(parts):
        pq.write_table(table.slice(bounds[index], bounds[index + 1] - bounds[index]),
                       folder / f"part-{index:05d}.parquet", compression="zstd")


def pipeline_recipe(sources: list[str], minhash: dict[str, Any], components: dict[str, Any], folder: str,
                    lsh: dict[str, Any] | None = None) -> Any:
    from dedup.api import _recipe

    stages = [{"id": "input", "type": "preloaded"}, {"id": "minhash", "type": "minhash", "params": minhash},
              {"id": "lsh", "type": "lsh", "params": lsh or {}},
              {"id": "components", "type": "components", "params": components},
              {"id": "dedup", "type": "dedup_remove"}]
    return _recipe(sources, {s: 1 for s in sources}, stages, 0, folder)


def timed(function: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of `function` in this process (both pipelines run in-process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def run_ours(workdir: Path, partitions: int) -> tuple[tuple[float, float], set[str]]:
    from pipeline.runner import run_recipe

    recipe = pipeline_recipe(["web"], {"preset": "datatrove", "partitions": partitions}, {"policy": "keep_one"},
                             str(workdir / "input"))
    elapsed = timed(lambda: run_recipe(recipe, str(workdir), executor="local", interactive=False))
    removed = pq.read_table(workdir / "removed" / "dedup", columns=["id"])["id"].to_pylist()
    return elapsed, set(removed)


def run_datatrove(input_folder: Path, workdir: Path, parts: int) -> tuple[tuple[float, float], set[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    out = str(workdir)

    def reader() -> ParquetReader:
        return ParquetReader(str(input_folder), id_key="id", text_key="text")

    stages = [
        ([reader(), MinhashDedupSignature(output_folder=f"{out}/sigs", config=config)], parts),
        ([MinhashDedupBuckets(input_folder=f"{out}/sigs", output_folder=f"{out}/buckets", config=config)],
         config.num_buckets),
        ([MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids", config=config)], 1),
        ([reader(), MinhashDedupFilter(input_folder=f"{out}/remove_ids",
                                       exclusion_writer=ParquetWriter(f"{out}/removed")),
          ParquetWriter(f"{out}/output")], parts)]

    def run() -> None:
        for index, (pipeline, tasks) in enumerate(stages):
            LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=f"{out}/logs/{index}",
                                  skip_completed=False).run()
    elapsed = timed(run)
    removed = pq.read_table(f"{out}/removed", columns=["id"])["id"].to_pylist()
    return elapsed, set(removed)


def planted_similarity(corpus: Any) -> np.ndarray:
    """True Jaccard (word 5-grams, simple normalization) of every planted pair."""
    from dedup.signatures import jaccard, shingle_sets

    texts = dict(zip(corpus.table["id"].to_pylist(), corpus.table["text"].to_pylist()))
    ids = [a for a, _ in corpus.pairs] + [b for _, b in corpus.pairs]
    sets = shingle_sets(pa.array([texts[i] for i in ids]), preset_config("datatrove"))
    n = len(corpus.pairs)
    return np.array([jaccard(sets[i], sets[n + i]) for i in range(n)])


def bench_pipeline(docs: int, seed: int, skip_datatrove: bool) -> None:
    from dedup.config import detection_probability

    parts = max(2, docs // 10_000)
    corpus = planted_corpus(originals=docs - docs // 10, duplicates=docs // 10, edit_range=(0.0, 0.1), seed=seed,
                            sources=("web",), min_chars=2500)
    chars = int(np.mean([len(t) for t in corpus.table["text"].to_pylist()]))
    pairs, similarity = corpus.pairs, planted_similarity(corpus)
    print(f"\n== whole pipeline: {docs} documents (~{chars} chars, {len(pairs)} planted near-duplicates), "
          f"{parts} Parquet parts, word 5-grams, 14 x 8, one core")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_parts(corpus.table, root / "ours" / "input" / "web", parts)
        del corpus
        warm = tempfile.mkdtemp(dir=folder)  # compile / load numba caches outside the timing
        small = pa.table({"id": ["a", "b"], "source": ["web"] * 2, "text": ["x y z w v u", "x y z w v u"]})
        write_parts(small, Path(warm) / "input" / "web", 1)
        run_ours(Path(warm), 1)
        (ours_wall, ours_cpu), ours_removed = run_ours(root / "ours", partitions=max(4, parts))
        print(f"  ours:      {ours_wall:8.1f} s wall, {ours_cpu:8.1f} s CPU ({docs / ours_cpu:7.0f} docs/s)  "
              f"removed {len(ours_removed)}")
        if skip_datatrove:
            return
        (dt_wall, dt_cpu), dt_removed = run_datatrove(root / "ours" / "input" / "web", root / "datatrove", parts)
    both = len(ours_removed & dt_removed)
    print(f"  datatrove: {dt_wall:8.1f} s wall, {dt_cpu:8.1f} s CPU ({docs / dt_cpu:7.0f} docs/s)  "
          f"removed {len(dt_removed)}")
    print(f"  ratio {dt_cpu / ours_cpu:.1f}x CPU time ({dt_wall / ours_wall:.1f}x wall)")
    print(f"  removed ids: {both} by both, {len(ours_removed - dt_removed)} only by ours, "
          f"{len(dt_removed - ours_removed)} only by datatrove (Jaccard of the two sets "
          f"{both / max(1, len(ours_removed | dt_removed)):.3f}); a planted pair counts as found when one of its "
          f"two documents is removed:")
    expected = detection_probability(similarity, 14, 8)
    for lo, hi in ((0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)):
        chosen = [p for p, s in zip(pairs, similarity) if lo <= s < hi]
        if not chosen:
            continue
        found = [np.mean([(a in removed) != (b in removed) for a, b in chosen]) for removed in (ours_removed, dt_removed)]
        curve = expected[(similarity >= lo) & (similarity < hi)].mean()
        print(f"    J in [{lo:.1f}, {min(hi, 1):.1f}): {len(chosen):5d} pairs, found by ours {found[0]:.3f}, "
              f"by datatrove {found[1]:.3f}, S-curve {curve:.3f}")
    planted = {d for p in pairs for d in p}
    print(f"  removed outside the planted pairs: ours {len(ours_removed - planted)}, "
          f"datatrove {len(dt_removed - planted)}")


# ---- 3. scaling --------------------------------------------------------------------------------
class ForkExecutor:
    """Runs each task in its own forked process and records the memory that task added: its peak RSS
    minus its RSS when it started (the pages shared with this parent process)."""

    name = "fork"

    def __init__(self) -> None:
        self.peaks: dict[str, list[float]] = {}

    def map(self, stage: Any, tasks: list[Any], config_hash: str, on_done: Callable[[dict], None]) -> None:
        from pipeline.executors import execute_task

        import psutil

        context = multiprocessing.get_context("fork")
        for task in tasks:
            receive, send = context.Pipe(duplex=False)

            def child(connection: Any = send, task: Any = task) -> None:
                start = psutil.Process().memory_info().rss / 2**20
                marker = execute_task(stage, task, config_hash)
                connection.send((marker, rss_mb() - start))

            process = context.Process(target=child)
            process.start()
            marker, peak = receive.recv()
            process.join()
            if process.exitcode:
                raise RuntimeError(f"task {task.task_id} of {stage.stage_id} failed")
            self.peaks.setdefault(stage.stage_id, []).append(peak)
            on_done(marker)

    def shutdown(self) -> None:
        pass


def cpu_seconds() -> float:
    """CPU time of this process and its finished (joined) children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def scaling_run(folder: Path, partitions: int, executor: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Per stage CPU seconds, and the largest per-task peak RSS increment (MB) of each stage."""
    from pipeline.runner import build_stages, run_stage
    from pipeline.workdir import Workdir

    recipe = pipeline_recipe(["web"], {"preset": "zyda2", "partitions": partitions},
                             {"policy": "keep_one", "max_edges_in_process": 0}, str(folder / "input"))
    times: dict[str, float] = {}
    for stage, config_hash in build_stages(recipe, Workdir(str(folder))):
        start = cpu_seconds()
        run_stage(stage, config_hash, executor, interactive=False)
        times[stage.stage_id] = cpu_seconds() - start
    return times, {stage: max(values) for stage, values in getattr(executor, "peaks", {}).items()}


def scaling_worker(folder: str, partitions: int) -> None:
    """One scaling configuration in a fresh, lean process (a parent that built corpora keeps freed
    memory resident, and forked tasks would reuse it unseen): warm up, run, print JSON."""
    from pipeline.executors import LocalExecutor

    with tempfile.TemporaryDirectory() as warm:
        write_parts(pa.table({"id": ["a", "b"], "source": ["web"] * 2, "text": ["x y z", "x y z"]}),
                    Path(warm) / "input" / "web", 1)
        scaling_run(Path(warm), 1, LocalExecutor())  # compile here: forked tasks inherit the code
    times, peaks = scaling_run(Path(folder), partitions, ForkExecutor())
    print(json.dumps({"times": times, "peaks": peaks}))


def bench_scaling(docs: int, seed: int) -> None:
    print(f"\n== scaling: {docs} and {4 * docs} documents of 60 random words (4 and 16 input parts), zyda2 preset "
          f"(char 25-grams, 8 x 16), components forced to the distributed rounds, every task in a forked process, "
          f"one core")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for n, parts in ((docs, 4), (4 * docs, 16)):
            corpus = planted_corpus(originals=n - n // 10, duplicates=n // 10, edit_range=(0.0, 0.03), seed=seed,
                                    sources=("web",), words=60)
            for partitions in (4, 16) if n > docs else (4,):
                write_parts(corpus.table, root / f"n{n}-p{partitions}" / "input" / "web", parts)
            del corpus
        runs = {}
        for n, partitions in ((docs, 4), (4 * docs, 4), (4 * docs, 16)):
            output = subprocess.run([sys.executable, __file__, "--scaling-worker", str(root / f"n{n}-p{partitions}"),
                                     str(partitions)], check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            times, peaks = result["times"], result["peaks"]
            runs[(n, partitions)] = (times, peaks)
            stages = ", ".join(f"{s} {t:.1f} s / {peaks[s]:.0f} MB" for s, t in times.items() if s != "input")
            print(f"  N={n:6d}, {partitions:2d} partitions: {sum(times.values()):6.1f} CPU s; per stage CPU time / "
                  f"largest task's peak RSS above its start: {stages}")
    (t1, p1), (t4, p4), (t16, p16) = runs[(docs, 4)], runs[(4 * docs, 4)], runs[(4 * docs, 16)]
    print(f"  time ratio 4N/N at 4 partitions: {sum(t4.values()) / sum(t1.values()):.2f} (target <= 4.5); "
          f"with 4x the partitions too: {sum(t16.values()) / sum(t1.values()):.2f}")
    for stage in ("lsh", "components"):
        print(f"  {stage:10s} peak RSS per task, N / 4 partitions -> 4N / 16 partitions: {p1[stage]:.0f} -> "
              f"{p16[stage]:.0f} MB (x{p16[stage] / p1[stage]:.2f}, target <= 1.5); 4N / 4 partitions: "
              f"{p4[stage]:.0f} MB (x{p4[stage] / p1[stage]:.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signature-docs", type=int, default=2000)
    parser.add_argument("--pipeline-docs", type=int, default=8000)
    parser.add_argument("--full", action="store_true", help="whole-pipeline comparison on 80,000 documents")
    parser.add_argument("--skip-datatrove-pipeline", action="store_true")
    parser.add_argument("--scale-docs", type=int, default=100_000, help="N of the scaling runs (N and 4N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="signatures,pipeline,scaling")
    parser.add_argument("--scaling-worker", nargs=2, metavar=("FOLDER", "PARTITIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    pin_one_core()
    if args.scaling_worker:
        scaling_worker(args.scaling_worker[0], int(args.scaling_worker[1]))
        return 0
    sections = set(args.sections.split(","))
    if "signatures" in sections:
        bench_signatures(args.signature_docs, args.seed)
    if "pipeline" in sections:
        bench_pipeline(80_000 if args.full else args.pipeline_docs, args.seed, args.skip_datatrove_pipeline)
    if "scaling" in sections:
        bench_scaling(args.scale_docs, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
