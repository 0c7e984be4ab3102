"""bench/gpu_check.sh on a machine without CUDA: one line saying so, exit 0, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the script would run its checks")
def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_0(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "gpu_check: no CUDA GPU visible to torch here (torch.cuda.is_available() is False); nothing to check"]
    assert result.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no work folder, no store


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the script would measure")
def test_gpu_scale_without_cuda_says_so_in_one_line_and_exits_0(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_scale.py")], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "gpu_scale: no CUDA GPU visible to torch here (torch.cuda.is_available() is False); nothing to measure"]
    assert list(tmp_path.iterdir()) == []


def test_gpu_scale_report_arithmetic(capsys):
    """samples/s = sentences / training seconds; MFU = 6 · parameters · padded tokens · samples/s over the
    measured peak of the step's precision; outside = wall less the work's seconds."""
    sys.path.insert(0, str(REPO / "bench"))
    from gpu_scale import report

    steps = [{"label": "teacher-fp32", "wall": 12.0, "outcome": {"seconds": 10.0}, "peak_gb": 4.0},
             {"label": "teacher-bf16", "wall": 7.0, "outcome": {"seconds": 4.0}, "peak_gb": float("nan")},
             {"label": "hessian", "wall": 9.0, "outcome": {"seconds": 8.5}, "peak_gb": 2.0}]
    report(steps, {"teacher": 1_000_000, "student": 10}, {"fp32": 1.2e12, "bf16": 6e12}, length=50, n_train=2000)
    lines = capsys.readouterr().out.splitlines()
    # fp32: 200 samples/s, 6e6 · 50 · 200 = 6e10 FLOP/s of 1.2e12: 5.0%; bf16: 500/s, 1.5e11 of 6e12: 2.5%
    assert "| teacher-fp32 | 12.0 | 10.0 | 2.0 | 200 | 4.00 | 5.0% |" in lines
    assert "| teacher-bf16 | 7.0 | 4.0 | 3.0 | 500 | - | 2.5% |" in lines
    assert "| hessian | 9.0 | 8.5 | 0.5 | - | 2.00 | - |" in lines
    assert "bf16 / fp32 teacher samples/s: 2.50x (goal >= 2.0x: met)" in lines
    assert "bf16 teacher samples/s: 500 (goal >= 3000: missed)" in lines
    assert "most seconds outside a command's work: 3.0 (teacher-bf16; goal <= 5 s: met)" in lines
