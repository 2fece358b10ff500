"""Where tasks run: in this process (debugging, tests), or as Ray tasks / a Ray actor pool.

A task is executed by `execute_task` wherever it runs: it clears what an interrupted attempt
left, runs the stage's task, checks its accounting and writes the task marker last, so a marker
exists only for fully written output.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Iterable

from pipeline.stage import Stage, StageError, Task, TaskResult

OnDone = Callable[[dict[str, Any]], None]


def execute_task(stage: Stage, task: Task, config_hash: str) -> dict[str, Any]:
    stage.ensure_setup()
    workdir = stage.workdir
    workdir.clear_task_outputs(stage.output_folders(task), task.task_id)
    started = time.perf_counter()
    result: TaskResult = stage.run_task(task)
    for source, stats in result.stats.items():
        stats.check(f"stage {stage.stage_id} task {task.task_id} source {source}")
    marker = {"config_hash": config_hash, "task_id": task.task_id, "source": task.source,
              "elapsed_s": round(time.perf_counter() - started, 3), "worker": _worker(), **result.to_json()}
    workdir.write_json_atomic(workdir.task_marker(stage.stage_id, task.task_id), marker)
    return marker


def _worker() -> dict[str, Any]:
    """Where a task ran (node, process), for provenance and for checking how work was spread."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return {"node": node, "pid": os.getpid(), "host": socket.gethostname()}


class LocalExecutor:
    """Runs tasks one after another in this process: no Ray, easy to debug."""

    name = "local"

    def map(self, stage: Stage, tasks: list[Task], config_hash: str, on_done: OnDone) -> None:
        for task in tasks:
            on_done(execute_task(stage, task, config_hash))

    def shutdown(self) -> None:
        pass


class _StageActor:
    """Holds one stage (and what its `setup()` loaded, e.g. a model) for many tasks."""

    def __init__(self, stage: Stage, config_hash: str):
        self.stage, self.config_hash = stage, config_hash

    def run(self, task: Task) -> dict[str, Any]:
        return execute_task(self.stage, task, self.config_hash)


class RayExecutor:
    """Ray tasks (default) or a Ray actor pool for stages that load a model once per actor."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        import ray

        self._started_here = not ray.is_initialized()
        if self._started_here:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                      "configure_logging": False}
            if address is None:
                kwargs["num_cpus"] = num_cpus or os.cpu_count()
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise StageError(f"cannot join the Ray cluster at {address!r} ({exc}). Start one with "
                                 f"`ray start --head`, or leave out --ray-address to start a local Ray "
                                 f"for the run.") from None
        self.ray = ray

    def map(self, stage: Stage, tasks: list[Task], config_hash: str, on_done: OnDone) -> None:
        if not tasks:
            return
        resources = stage.resources()
        if stage.uses_actors:
            self._map_actors(stage, tasks, config_hash, on_done, resources)
            return
        remote = self.ray.remote(execute_task).options(max_retries=3, **resources)
        stage_ref = self.ray.put(stage)
        pending = [remote.remote(stage_ref, task, config_hash) for task in tasks]
        self._drain(pending, on_done)

    def _map_actors(self, stage: Stage, tasks: list[Task], config_hash: str, on_done: OnDone,
                    resources: dict[str, float]) -> None:
        from ray.util import ActorPool

        cluster = self.ray.cluster_resources()
        per_actor_cpu = max(resources.get("num_cpus", 1), 1e-3)
        slots = int(cluster.get("CPU", 1) // per_actor_cpu)
        if resources.get("num_gpus"):
            slots = min(slots, int(cluster.get("GPU", 0) // resources["num_gpus"]))
        actor_cls = self.ray.remote(_StageActor).options(max_restarts=2, max_task_retries=2, **resources)
        stage_ref = self.ray.put(stage)
        actors = [actor_cls.remote(stage_ref, config_hash) for _ in range(max(1, min(slots, len(tasks))))]
        try:
            for marker in ActorPool(actors).map_unordered(lambda actor, task: actor.run.remote(task), tasks):
                on_done(marker)
        finally:
            for actor in actors:
                self.ray.kill(actor)

    def _drain(self, pending: Iterable[Any], on_done: OnDone) -> None:
        pending = list(pending)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                on_done(self.ray.get(ref))

    def shutdown(self) -> None:
        if self._started_here:
            self.ray.shutdown()


def make_executor(kind: str, address: str | None = None, num_cpus: int | None = None) -> LocalExecutor | RayExecutor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, num_cpus)
    raise ValueError(f"unknown executor {kind!r}: use 'ray' or 'local'")
