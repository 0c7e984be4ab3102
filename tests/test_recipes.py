"""The papers' recipes end to end: paper_sprkd.py on generated images in the malaria layout, paper_sage.py on
generated SST-2 files with a tiny BERT built from a config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_vision_data import write_malaria

from conftest import REPO


@pytest.mark.slow
def test_paper_sprkd_recipe_prints_every_table(tmp_path):
    root = write_malaria(tmp_path / "m", 24, 24, seed=3)
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "paper_sprkd.py"), "--data-dir", str(root), "--db", str(db),
         "--seeds", "0-1", "--teachers", "2", "--teacher-epochs", "2", "--epochs", "3", "--patience", "2",
         "--tune", "lr=0.001,0.01", "--batch-size", "8", "--saddle-every", "1", "--converged-at", "0.5",
         "--last-epochs", "2", "--eval-noise", "0.1", "--probe-size", "16"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    words = " ".join(out.split())  # a table's title wraps where the terminal width puts it
    assert "students, test accuracy at best-val epoch" in words  # compare's table of the three arms
    for arm in ("sgd", "rkd (kd)", "sprkd", "sprkd-no-nhe", "sprkd-no-pgd", "sprkd-no-asr", "sprkd-asr-only",
                "sprkd-revive"):
        assert arm in out, arm
    published = out[out.index("beside the sources'"):]
    assert "94.80" in published and "91.3" in published  # the sources' figures beside ours
    tuned = json.loads(subprocess.run(
        [sys.executable, "-m", "sprkd_cli", "--db", str(db), "runs", "list", "--json", "--limit", "0"],
        capture_output=True, text=True, cwd=tmp_path).stdout)
    ablated = [r for r in tuned if r.get("method") == "sprkd" and "sprkd-no-nhe" in (r.get("arms") or [])]
    assert len(ablated) == 2  # the ablations ran on both seeds
    assert "recipe wall time:" in out
    for metric in ("test_acc", "epochs_to:0.5", "auc_val_acc", "val_loss_sd:2", "hessian.top1", "hessian.trace",
                   "hessian.min", "noise_acc:0.1"):
        assert f"malaria: {metric} " in out, metric  # "at best-val", or "(whole run)" for a curve
    assert out.count("pairwise tests") >= 7  # every metric's tests (a censored one may have fewer pairs)
    assert "Brown" in out  # the spread's test, for val_loss_sd
    assert "McNemar exact test" in out
    assert "report of " in out and len(list(tmp_path.rglob("reports/malaria-*.html"))) == 1  # and the page


@pytest.mark.slow
def test_paper_sage_recipe_tunes_every_arm_and_prints_every_table(tmp_path):
    from textdata import sst2_dir, tiny_model

    data = sst2_dir(tmp_path / "glue", n_train=240, n_val=60)
    teacher = tiny_model(tmp_path / "teacher", layers=2)
    done = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "paper_sage.py"), "--data-dir", str(data), "--db",
         str(tmp_path / "runs.db"), "--teacher", f"hf:{teacher}", "--work", str(tmp_path / "work"),
         "--train-sentences", "200", "--max-len", "16", "--student-layers", "1", "--seeds", "0-1",
         "--teacher-epochs", "1", "--teacher-lr", "1e-3", "--epochs", "2", "--tune-lr", "3e-3",
         "--batch-size", "16", "--converged-at", "0.6"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert "students, test accuracy at best-val epoch" in " ".join(out.split()) and "tuned" in out
    for arm in ("sgd", "kd", "sage"):
        assert f"│ {arm} " in out
    for metric in ("test_acc", "epochs_to:0.6", "auc_val_acc", "val_loss_sd:2"):
        assert f"sst2:max_len=16: {metric} " in out, metric
    assert "McNemar exact test" in out
    assert "report of " in out and len(list(tmp_path.rglob("reports/sst2_max_len_16-*.html"))) == 1
    # the student is the teacher's first layer, its data a seeded subset of the training sentences
    config = json.loads((tmp_path / "work" / "student-L1" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert len((tmp_path / "work" / "sst2-200" / "train.tsv").read_text().splitlines()) == 201


def test_paper_sage_recipe_without_its_teacher_says_how_to_get_it(tmp_path):
    data = tmp_path / "glue"
    data.mkdir()
    done = subprocess.run([sys.executable, str(REPO / "recipes" / "paper_sage.py"), "--data-dir", str(data),
                           "--teacher", f"hf:{tmp_path / 'nothing'}"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"error: --teacher hf:{tmp_path / 'nothing'}: give hf:FOLDER, a "
                                                "local Hugging Face model folder"]
