"""Hash-partitioned intermediate files: how dedup's all-to-all phases exchange data without a master.

A writer routes each row to one of P partitions and writes one Parquet file per non-empty partition,
`<folder>/p<q:05d>/part-<task>-0000.parquet`; the reader of partition q reads that one folder.
No process ever holds more than its own input and its own partition.
"""

from __future__ import annotations

import posixpath
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from pipeline.workdir import Workdir


def partition_dir(folder: str, partition: int) -> str:
    return posixpath.join(folder, f"p{partition:05d}")


def partition_dirs(folder: str, partitions: int) -> list[str]:
    return [partition_dir(folder, q) for q in range(partitions)]


def write_partitioned(workdir: Workdir, folder: str, task_id: str, table: pa.Table, partition: np.ndarray,
                      partitions: int) -> int:
    """Write the rows of `table` to their partitions (`partition[i]` for row i); returns files written."""
    if table.num_rows == 0:
        return 0
    order = np.argsort(partition, kind="stable")
    sorted_parts = partition[order]
    bounds = np.searchsorted(sorted_parts, np.arange(partitions + 1))
    table = table.take(pa.array(order))
    written = 0
    for q in range(partitions):
        start, end = int(bounds[q]), int(bounds[q + 1])
        if end > start:
            path = posixpath.join(partition_dir(folder, q), f"part-{task_id}-0000.parquet")
            workdir.write_table_atomic(path, table.slice(start, end - start))
            written += 1
    return written


def read_partition(workdir: Workdir, folder: str, partition: int, columns: list[str] | None = None,
                   schema: pa.Schema | None = None) -> pa.Table:
    """All rows routed to `partition` (empty table with `schema` when nothing was)."""
    tables = [workdir.read_table(p, columns) for p in workdir.parts(partition_dir(folder, partition))]
    if not tables:
        if schema is None:
            raise ValueError(f"no files in {partition_dir(folder, partition)} and no schema given")
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return pa.concat_tables(tables)


def map_jobs(function: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
    """Run `function(*job)` for every job: as Ray tasks when Ray is up (each bounded by its own
    partition), else one after the other in this process. Results come back in job order."""
    import ray

    if not ray.is_initialized() or len(jobs) <= 1:
        return [function(*job) for job in jobs]
    remote = ray.remote(function).options(num_cpus=1, max_retries=3)
    return ray.get([remote.remote(*job) for job in jobs])
