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
