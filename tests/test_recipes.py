"""The sprkd paper's recipe (recipes/paper_sprkd.py) end to end on generated images in the malaria layout."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO
from test_vision_data import write_malaria


@pytest.mark.slow
def test_paper_sprkd_recipe_prints_every_table(tmp_path):
    root = write_malaria(tmp_path / "m", 24, 24, seed=3)
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "paper_sprkd.py"), "--data-dir", str(root), "--db", str(db),
         "--seeds", "0-1", "--teachers", "2", "--teacher-epochs", "2", "--epochs", "3", "--batch-size", "8",
         "--saddle-every", "1", "--converged-at", "0.5", "--last-epochs", "2", "--eval-noise", "0.1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert "students, test accuracy at best-val epoch" in out  # compare's table of the three arms
    for arm in ("sgd", "rkd (kd)", "sprkd"):
        assert arm in out
    for metric in ("test_acc", "epochs_to:0.5", "auc_val_acc", "val_loss_sd:2", "hessian.top1", "hessian.trace",
                   "hessian.min", "noise_acc:0.1"):
        assert f"malaria: {metric} " in out, metric  # "at best-val", or "(whole run)" for a curve
    assert out.count("pairwise tests") >= 7  # every metric's tests (a censored one may have fewer pairs)
    assert "Brown" in out  # the spread's test, for val_loss_sd
    assert "McNemar exact test" in out
