"""The chapter-13 DDP demo runs as a real 2-process torch.distributed job (gloo, loopback, torchrun)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book"))
import ddp_demo  # noqa: E402

pytestmark = pytest.mark.xdist_group("ddp")


def test_ddp_step_equals_single_process_training_on_the_combined_batch():
    result = ddp_demo.launch(nproc=2, timeout=180)
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["combined"] == 2 * result["per_rank"]
    assert len(result["steps"]) == ddp_demo.STEPS
    for step in result["steps"]:
        # float64: DDP's averaged gradient and the single-process gradient agree to rounding
        assert step["grad_vs_single"] < 1e-12 and step["weights_vs_single"] < 1e-12
        assert step["grad_vs_by_hand"] < 1e-12       # DDP == all_reduce(SUM) / world_size
        assert step["replicas_differ_by"] == 0.0      # every rank holds the same weights
        assert step["local_grad_vs_single"] > 1e-3    # a shard's own gradient is not the full one
    assert "rank 0 of 2 (gloo)" in result["log"]


def test_launch_reports_a_failing_job(monkeypatch, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(ddp_demo, "__file__", str(bad))
    with pytest.raises(RuntimeError, match="failed"):
        ddp_demo.launch(nproc=2, timeout=120)


def test_free_port_is_a_loopback_port():
    port = ddp_demo.free_port()
    assert 1024 <= port <= 65535
