"""The plots' names and labels: a learning-curve file per comparison, the student in its title, teachers
labelled as teachers, and the weights and probe set a density was measured on."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

from sprkd_cli.services.figures import learning_curves  # noqa: E402
from sprkd_cli.services.hessian import density_label  # noqa: E402


class _Store:
    """What learning_curves reads: per-epoch metrics of two seeds per arm, and where plots go."""

    def __init__(self, folder):
        self.folder, self.titles = folder, []

    def metrics(self, run_ids):
        return [SimpleNamespace(run_id=rid, epoch=e, split="val", name=name, value=v * e)
                for rid in run_ids for e in (1, 2, 3) for name, v in (("acc", 0.3), ("loss", 0.2))]

    def artifact_path(self, *parts):
        return self.folder.joinpath(*parts)


def test_learning_curves_are_named_for_their_runs_and_show_acc_and_loss(tmp_path, monkeypatch):
    import matplotlib.figure

    store, seen = _Store(tmp_path), []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, path, **kw: seen.append(fig) or open(path, "wb").close())
    first = learning_curves(store, {"sgd": ["a1", "a2"], "kd": ["b1", "b2"]}, "digits", "mlp-small")
    second = learning_curves(store, {"sgd": ["a3", "a4"], "kd": ["b3", "b4"]}, "digits", "mlp-small")
    assert first != second and first.name.startswith("digits-sgd-kd-")  # the next comparison keeps this one
    assert learning_curves(store, {"sgd": ["a2", "a1"], "kd": ["b1", "b2"]}, "digits", "mlp-small") == first
    fig = seen[0]
    assert "mlp-small" in fig._suptitle.get_text()
    acc, loss = fig.axes
    assert acc.get_ylabel() == "validation accuracy" and loss.get_ylabel() == "validation loss"
    assert all(float(t).is_integer() for t in acc.get_xticks())  # integer epochs
    assert [line.get_label() for line in acc.lines] == ["sgd (n=2)", "kd (n=2)"]


def test_density_labels_name_teachers_weights_and_probe_set():
    teacher = SimpleNamespace(id="t1", kind="teacher", method="sgd", seed=3)
    student = SimpleNamespace(id="s1", kind="student", method="kd", seed=0)
    request = {"weights": "best-val", "probe_batches": 2, "probe_size": 256, "probe_seed": None, "mode": "eval"}
    assert density_label(teacher, request) == "t1 (teacher; best-val weights; probe 2x256 seed 3, eval mode)"
    assert density_label(student, request | {"probe_seed": 7, "weights": "final", "layer": "body"}) == \
        "s1 (kd; final weights; probe 2x256 seed 7, eval mode, layer body)"
