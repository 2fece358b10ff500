"""What a dedup run did: cluster sizes, removals per source and per duplicate-of source, the
largest clusters with text snippets. Read partition by partition from a `components` stage's
decisions, so a summary of billions of documents never holds them all.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup.resolve import DECISION_SCHEMA
from dedup.shuffle import read_partition
from dedup.upstream import fetch_texts, read_meta
from pipeline.workdir import Workdir

SIZE_BINS = ((2, 2), (3, 3), (4, 4), (5, 9), (10, 99), (100, 999), (1000, None))


def _bin_label(lo: int, hi: int | None) -> str:
    return str(lo) if lo == hi else (f"{lo}-{hi}" if hi else f"{lo}+")


def dedup_summary(workdir: Workdir | str, components_stage: str, top: int = 5, snippet_chars: int = 160) -> dict[str, Any]:
    """Summary of the `components` stage `components_stage` (JSON-serializable)."""
    workdir = Workdir(workdir) if isinstance(workdir, str) else workdir
    meta = read_meta(workdir, components_stage, "dedup-report")
    keys = read_meta(workdir, meta["keys_stage"], "dedup-report")
    sizes: Counter[int] = Counter()
    removed: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    largest: list[tuple[int, str]] = []  # min-heap of (size, component)
    folder = workdir.path(components_stage, "decisions")
    for q in range(meta["partitions"]):
        part = read_partition(workdir, folder, q, schema=DECISION_SCHEMA)
        if part.num_rows == 0:
            continue
        heads = part.filter(pc.equal(part["id"], part["component"]))  # one row per component
        sizes.update(heads["component_size"].to_pylist())
        for size, component in zip(heads["component_size"].to_pylist(), heads["component"].to_pylist()):
            item = (size, component)
            if len(largest) < top:
                heapq.heappush(largest, item)
            elif item > largest[0]:
                heapq.heapreplace(largest, item)
        gone = part.filter(part["removed"])
        removed.update(gone["source"].to_pylist())
        pairs.update(zip(gone["source"].to_pylist(), gone["duplicate_of_source"].to_pylist()))
    histogram = {}
    for lo, hi in SIZE_BINS:
        histogram[_bin_label(lo, hi)] = sum(c for s, c in sizes.items() if s >= lo and (hi is None or s <= hi))
    clusters = _cluster_details(workdir, folder, meta["partitions"], keys, sorted(largest, reverse=True),
                                snippet_chars)
    return {"stage": components_stage, "kind": meta["kind"], "policy": meta["policy"],
            "settings": keys["settings"], "documents": keys["documents"], "documents_in_clusters": meta["nodes"],
            "clusters": sum(sizes.values()), "cluster_sizes": histogram,
            "removed": dict(sorted(removed.items())), "removed_total": sum(removed.values()),
            "removed_by_duplicate_of_source": [{"source": s, "duplicate_of_source": d, "documents": n}
                                               for (s, d), n in sorted(pairs.items())],
            "largest_clusters": clusters}


def _cluster_details(workdir: Workdir, folder: str, partitions: int, keys: dict[str, Any],
                     largest: list[tuple[int, str]], snippet_chars: int) -> list[dict[str, Any]]:
    """Members (source, id, kept) and the first characters of a few of them, for the largest clusters."""
    if not largest:
        return []
    wanted = pa.array([c for _, c in largest], pa.string())
    rows: list[dict[str, Any]] = []
    for q in range(partitions):
        part = read_partition(workdir, folder, q, schema=DECISION_SCHEMA)
        rows += part.filter(pc.is_in(part["component"], value_set=wanted)).to_pylist()
    details = []
    for size, component in largest:
        members = sorted((r for r in rows if r["component"] == component), key=lambda r: (r["removed"], r["id"]))
        shown = members[:3]
        texts = fetch_texts(workdir, keys, np.array(sorted(r["node"] for r in shown), dtype=np.int64))
        by_node = dict(zip(sorted(r["node"] for r in shown), texts.to_pylist()))
        details.append({"component": component, "size": size,
                        "sources": dict(sorted(Counter(r["source"] for r in members).items())),
                        "removed": sum(r["removed"] for r in members),
                        "examples": [{"id": r["id"], "source": r["source"], "removed": r["removed"],
                                      "snippet": " ".join((by_node[r["node"]] or "").split())[:snippet_chars]}
                                     for r in shown]})
    return details


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown (for `zyda dedup-report` and the run report)."""
    settings = summary["settings"]
    how = (f"MinHash: {settings['minhash']['shingle']} {settings['minhash']['k']}-grams, "
           f"{settings['minhash']['bands']} bands x {settings['minhash']['rows']} rows "
           f"(50% detection at Jaccard {settings['threshold']:.3f})" if summary["kind"] == "minhash"
           else f"exact text hash ({settings['normalize']} normalization)")
    lines = [f"{how}; policy `{summary['policy']}`.", "",
             f"{summary['documents']:,} documents; {summary['documents_in_clusters']:,} in "
             f"{summary['clusters']:,} duplicate clusters; {summary['removed_total']:,} removed.", "",
             "| cluster size | clusters |", "|---|---:|"]
    lines += [f"| {size} | {count:,} |" for size, count in summary["cluster_sizes"].items()]
    lines += ["", "| removed from | duplicate of | documents |", "|---|---|---:|"]
    lines += [f"| {r['source']} | {r['duplicate_of_source']} | {r['documents']:,} |"
              for r in summary["removed_by_duplicate_of_source"]]
    lines += ["", "| source | removed |", "|---|---:|"]
    lines += [f"| {s} | {n:,} |" for s, n in summary["removed"].items()]
    if summary["largest_clusters"]:
        lines += ["", "Largest clusters:", ""]
        for cluster in summary["largest_clusters"]:
            sources = ", ".join(f"{s} {n}" for s, n in cluster["sources"].items())
            lines.append(f"- `{cluster['component']}`: {cluster['size']} documents ({sources}), "
                         f"{cluster['removed']} removed")
            for example in cluster["examples"]:
                state = "removed" if example["removed"] else "kept"
                lines.append(f"  - {state} `{example['id']}`: {example['snippet']}")
    return "\n".join(lines)
