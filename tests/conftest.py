"""Shared fixtures: offline environment, upstream-format fixture files, one Ray for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def ray_local():
    """A local two-CPU Ray shared by the tests that need one (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    from tests.upstream_fixtures import write_upstream

    return write_upstream(tmp_path / "upstream")
