"""Classifier benchmarks, ratios measured in the same run.

1. fastText: the whole classify stage (Parquet in, batched predict, keep rule, kept + removed
   Parquet out, score cache, task marker) in documents/s, against calling fastText's
   `model.predict` in a plain Python loop over the same texts already in memory (with the same
   newline-to-space preprocessing, which fastText requires). Target: stage overhead <= 10%.
2. Transformer: the tiny NeMo-layout DeBERTa classifier on CPU, length-sorted batches against
   arrival-order batches on the same documents (page lengths spread like web text), documents/s
   and the padding fraction of each. Target: >= 1.5x.
3. GPU only (skipped without CUDA): documents/s of a DeBERTa-v3-base-sized classifier (random
   weights, 768 hidden, 12 layers, 128100-row embedding) in bf16/fp16 on 6000-character pages,
   with the GPU's name and the date, for the README.

    python bench/classifiers.py [--ft-docs 20000] [--repeat 3] [--hf-docs 128] [--hf-batch 16]
                                [--hf-repeat 1] [--gpu-docs 2048] [--gpu-batch 64]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Run as a script, this folder would come first on sys.path and its files (tokenize.py, ...) would
# shadow the standard library: import from the repository instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

from classifiers.fasttext_scorer import load_fasttext, preprocess  # noqa: E402
from classifiers.tiny import build_deberta_base, build_nemo_quality, spam_texts, wiki_texts  # noqa: E402
from classifiers.train import TrainOptions, train_classifier  # noqa: E402
from pipeline.manifest import load_recipe  # noqa: E402
from pipeline.runner import run_recipe  # noqa: E402


def web_pages(count: int, seed: int, mean_chars: int = 3000) -> list[str]:
    """Pages of log-normally spread length (as web text) built from wiki extracts, some spam."""
    rng = np.random.default_rng(seed)
    extracts = wiki_texts(6000)
    spam = spam_texts(max(count // 10, 1), seed=seed)
    pages = []
    for i in range(count):
        if i % 10 == 9:
            pages.append(spam[i // 10])
            continue
        target = int(np.clip(rng.lognormal(np.log(mean_chars), 0.8), 200, 60_000))
        parts, size = [], 0
        while size < target:
            part = extracts[int(rng.integers(len(extracts)))]
            parts.append(part)
            size += len(part) + 2
        pages.append("\n\n".join(parts)[:target])
    return pages


# ---- 1. fastText stage vs plain predict loop ---------------------------------------------------
def bench_fasttext(root: Path, docs: int, repeat: int) -> None:
    model_path = root / "model" / "quality.bin"
    root.mkdir(parents=True)
    train_classifier([str(_jsonl(root / "pos.jsonl", wiki_texts(2000, offset=6000)))],
                     [str(_jsonl(root / "neg.jsonl", spam_texts(2000, seed=99)))], model_path,
                     TrainOptions(dim=64, bucket=200_000))
    texts = web_pages(docs, seed=1)
    upstream = root / "upstream" / "zyda" / "data" / "zyda_no_starcoder" / "zyda_refinedweb"
    upstream.mkdir(parents=True)
    for i, chunk in enumerate(np.array_split(np.arange(docs), 4)):
        part = [texts[j] for j in chunk]
        pq.write_table(pa.table({"text": part, "source": ["c4"] * len(part), "filtering_features": ["{}"] * len(part),
                                 "source_other": ["{}"] * len(part)}), upstream / f"train-{i:05d}.parquet")
    recipe = _recipe(root, {"model": {"kind": "fasttext", "path": str(model_path)}, "keep": {"min": 0.5}})
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(f"fastText: {docs:,} pages, {megabytes:.1f} MB of text, dim 64 bigram model, one process")

    model = load_fasttext(model_path)
    loop_times, stage_times = [], []
    for attempt in range(repeat):
        started = time.perf_counter()
        for text in texts:
            model.predict(preprocess(text), k=-1)
        loop_times.append(time.perf_counter() - started)
        workdir = root / f"work-{attempt}"
        run_recipe(recipe, str(workdir), executor="local", stages=["ingest"])
        started = time.perf_counter()
        run_recipe(recipe, str(workdir), executor="local", stages=["quality"])
        stage_times.append(time.perf_counter() - started)
    loop, stage = min(loop_times), min(stage_times)
    print(f"  plain model.predict loop : {docs / loop:10,.0f} docs/s  ({loop:.2f} s, best of {repeat})")
    print(f"  classify stage           : {docs / stage:10,.0f} docs/s  ({stage:.2f} s: Parquet in/out, "
          f"keep rule, score cache, markers)")
    overhead = stage / loop - 1
    print(f"  stage overhead vs loop   : {overhead * 100:+.1f}%  (target <= +10%: "
          f"{'met' if overhead <= 0.10 else 'NOT met'})")


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _recipe(root: Path, params: dict):
    repo = Path(__file__).resolve().parents[1]
    source = yaml.safe_load((repo / "manifests" / "sources" / "zyda-1.yaml").read_text())
    source["uri"] = str(root / "upstream" / "zyda" / "data" / "zyda_no_starcoder" / "*" / "*.parquet")
    (root / "recipe" / "sources").mkdir(parents=True, exist_ok=True)
    (root / "recipe" / "sources" / "zyda-1.yaml").write_text(yaml.safe_dump(source))
    recipe = {"name": "bench", "sources": [{"manifest": "sources/zyda-1.yaml"}],
              "execution": {"batch_size": 10_000},
              "stages": [{"id": "ingest", "type": "ingest"}, {"id": "quality", "type": "classify", "params": params}]}
    (root / "recipe" / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return load_recipe(root / "recipe" / "recipe.yaml")


# ---- 2. length-sorted vs arrival-order batching ------------------------------------------------
def bench_batching(root: Path, docs: int, batch: int, repeat: int) -> None:
    import torch

    from classifiers.transformer import TransformerScorer

    torch.set_num_threads(1)
    folder = build_nemo_quality(root / "nemo", wiki_texts(2000), vocab_size=4000)
    texts = web_pages(docs, seed=2, mean_chars=1500)
    scorers = {name: TransformerScorer("nemo_quality", folder, 6000, 1024, batch, sort_by_length=sort)
               for name, sort in (("length-sorted", True), ("arrival-order", False))}
    lengths = [len(x) for x in scorers["length-sorted"].tokenize(texts)]
    print(f"transformer (tiny NeMo-layout DeBERTa, CPU, 1 thread): {docs} pages, batch {batch}, "
          f"tokens per page median {int(np.median(lengths))}, max {max(lengths)}")
    rates, outputs = {}, {}
    for name, scorer in scorers.items():
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            outputs[name] = scorer.outputs(texts)
            best = min(best, time.perf_counter() - started)
        rates[name] = docs / best
        padding = scorer.last_padding_fraction * 100
        print(f"  {name:14}: {rates[name]:8.1f} docs/s  padding {padding:5.1f}% of positions")
    same = np.allclose(outputs["length-sorted"], outputs["arrival-order"], atol=1e-4)
    ratio = rates["length-sorted"] / rates["arrival-order"]
    print(f"  speed-up: {ratio:.2f}x (target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'}); "
          f"same outputs in original order: {same}")


# ---- 3. GPU throughput of a DeBERTa-v3-base-sized classifier -----------------------------------
def bench_gpu(root: Path, docs: int, batch: int) -> None:
    import torch

    if not torch.cuda.is_available():
        print("GPU: no CUDA device here, skipped (run this script on a GPU machine for the README number)")
        return
    from classifiers.transformer import QualityModel, TransformerScorer

    base = build_deberta_base(root / "base768", wiki_texts(3000), hidden=768, layers=12, heads=12,
                              intermediate=3072, vocab_size=8000, init_range=0.02, embedding_rows=128100)
    config = {"base_model": str(base), "fc_dropout": 0.2, "id2label": {"0": "High", "1": "Medium", "2": "Low"},
              "label2id": {"High": 0, "Medium": 1, "Low": 2}, "max_len": 1024}
    folder = root / "nemo768"
    QualityModel(config).save_pretrained(folder, config=config)
    for name in ("spm.model", "tokenizer_config.json"):
        (folder / name).write_bytes((base / name).read_bytes())
    texts = web_pages(docs, seed=3, mean_chars=6000)
    scorer = TransformerScorer("nemo_quality", folder, 6000, 1024, batch)
    scorer.outputs(texts[:batch])  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    started = time.perf_counter()
    scorer.outputs(texts)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    name = torch.cuda.get_device_name(0)
    print(f"GPU {name}, {datetime.date.today().isoformat()}: DeBERTa-v3-base-sized classifier, {scorer.dtype}, "
          f"batch {batch}, 6000-char pages (1024 tokens max): {docs / elapsed:,.0f} docs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ft-docs", type=int, default=20_000)
    parser.add_argument("--hf-docs", type=int, default=128)
    parser.add_argument("--hf-batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="fastText timings: best of N")
    parser.add_argument("--hf-repeat", type=int, default=1, help="transformer timings: best of N")
    parser.add_argument("--gpu-docs", type=int, default=2048)
    parser.add_argument("--gpu-batch", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-classifiers-") as tmp:
        root = Path(tmp)
        bench_fasttext(root / "ft", args.ft_docs, args.repeat)
        bench_batching(root / "hf", args.hf_docs, args.hf_batch, args.hf_repeat)
        bench_gpu(root / "gpu", args.gpu_docs, args.gpu_batch)


if __name__ == "__main__":
    main()
