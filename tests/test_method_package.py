"""A method is one package: one written here, outside the project, is found through $SPRKD_METHODS and used by
distill, compare --arm and stats, with its own option as a flag, without another file changing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import DATA, STUDENT_MODEL, TRAIN

# Label smoothing: cross-entropy against (1 - eps)·onehot(y) + eps/K. No teacher.
DECLARATION = '''
from dataclasses import dataclass

from sprkd_cli.methods.contract import MethodOptions
from sprkd_cli.options import between, option


@dataclass
class SmoothOptions(MethodOptions):
    name = "smooth"
    smoothing: float = option(0.1, "Label smoothing eps.", panel="smooth method", check=between(0, 1))

    @classmethod
    def load(cls):
        from .method import Smooth

        return Smooth


OPTIONS = SmoothOptions
'''

IMPLEMENTATION = '''
import torch.nn.functional as F

from sprkd_cli.methods.contract import Method


class Smooth(Method):
    def __init__(self, options):
        self.options = options

    @classmethod
    def prepare(cls, context):
        context.refuse_augment()
        return cls(context.options)

    def loss(self, model, x, y, index):
        return F.cross_entropy(model(x), y, label_smoothing=self.options.smoothing)
'''


@pytest.fixture
def plugin_env(tmp_path):
    package = tmp_path / "plugins" / "smooth_method"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(DECLARATION))
    (package / "method.py").write_text(textwrap.dedent(IMPLEMENTATION))
    path = os.pathsep.join(filter(None, [str(tmp_path / "plugins"), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, SPRKD_METHODS="smooth_method", PYTHONPATH=path)


def run(env, db, *args):
    argv = [sys.executable, "-m", "sprkd_cli", "--db", str(db), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_a_method_package_outside_the_project_is_used_by_distill_compare_and_stats(plugin_env, tmp_path):
    db = tmp_path / "runs.db"
    assert "--smoothing" in run(plugin_env, db, "distill", "--help")
    one = run(plugin_env, db, "distill", "--method", "smooth", "--smoothing", "0.2", "--dataset", DATA, "--student",
              STUDENT_MODEL, *TRAIN, "--json")
    assert one["status"] == "finished" and 0 <= one["test_acc"] <= 1

    common = ["--dataset", DATA, "--student", STUDENT_MODEL, *TRAIN, "--seeds", "0-2"]
    compared = run(plugin_env, db, "compare", *common, "--arm", "sgd", "--arm", "smooth", "--arm",
                   "strong=smooth:smoothing=0.4", "--json")
    rows = {row["arm"]: row for row in compared["arms"]}
    assert set(rows) == {"sgd", "smooth", "strong"} and all(row["n"] == 3 for row in rows.values())
    assert rows["strong"]["method"] == "smooth" and rows["smooth"]["teacher_ids"] == []

    stats = run(plugin_env, db, "stats", "--dataset", DATA, "--student", STUDENT_MODEL, "--arms", "sgd,smooth,strong",
                "--json")
    assert {(pair["a"], pair["b"]) for pair in stats} == {("sgd", "smooth"), ("sgd", "strong"), ("smooth", "strong")}
    assert all(pair["n_a"] == pair["n_b"] == 3 and 0 <= pair["p_welch"] <= 1 for pair in stats)

    # the project's own methods are the same without the package
    plain = subprocess.run([sys.executable, "-m", "sprkd_cli", "distill", "--help"], capture_output=True, text=True,
                           env={k: v for k, v in plugin_env.items() if k != "SPRKD_METHODS"}, timeout=60)
    assert plain.returncode == 0 and "--smoothing" not in plain.stdout


def test_a_method_module_that_cannot_be_imported_is_one_line(tmp_path):
    env = dict(os.environ, SPRKD_METHODS="no_such_method_package")
    result = subprocess.run([sys.executable, "-m", "sprkd_cli", "--db", str(tmp_path / "runs.db"), "runs", "list"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "no_such_method_package" in result.stderr
    assert "Traceback" not in result.stderr
