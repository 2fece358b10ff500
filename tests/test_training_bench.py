"""bench/gpu_attention.py runs end to end in its CPU smoke mode (the GPU numbers need a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_attention_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_attention.py"), "--smoke", "--device", "cpu",
                             "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["smoke"] and data["device"] == "cpu"
    rows = data["attention"]
    assert {(r["seq_len"], r["attention"]) for r in rows} == {
        (s, a) for s in (64, 128) for a in ("mha", "gqa-kv2", "cca-c2", "ccgqa-c2")}
    assert all(r["forward_ms"] > 0 and r["forward_backward_ms"] > 0 for r in rows)
    cca = next(r for r in rows if r["attention"] == "cca-c2" and r["seq_len"] == 128)
    assert cca["kv_cache_ratio_vs_mha"] == 2.0 and cca["flops_ratio_vs_mha"] > 1.5
    assert data["training"]["tokens_per_s"] > 0 and data["training"]["mfu"] is None
    assert "training zamba2-tiny" in result.stdout
