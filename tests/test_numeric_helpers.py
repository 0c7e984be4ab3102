"""The small numeric helpers every method shares: a model's mode for a block, derived seeds,
soft targets, and the safetensors files."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sprkd_cli.errors import UserError


def test_train_mode_restores_each_modules_own_mode_also_on_error():
    from sprkd_cli.models.modes import train_mode

    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(2)))
    model.train()
    model[1].eval()  # modes that differ inside the model
    before = [m.training for m in model.modules()]
    with train_mode(model, False):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError), train_mode(model, True):
        assert all(m.training for m in model.modules())
        raise RuntimeError
    assert [m.training for m in model.modules()] == before


def test_derived_seeds_and_the_probe_batch_seeds():
    from sprkd_cli.hessian import ProbeSet
    from sprkd_cli.seeds import derive_seed

    assert derive_seed(3, 17) == 3 * 1_000_003 + 17
    assert derive_seed(0, 5) == 5 and derive_seed(1, 0) != derive_seed(0, 1)
    x, y = torch.randn(30, 2), torch.randint(0, 2, (30,))
    assert ProbeSet.draw(x, y, n_batches=3, size=5, seed=-2).batch_seeds() == [2_000_006, 2_000_007, 2_000_008]
    assert ProbeSet.from_indices(x, y, [[0, 1], [2]]).batch_seeds() == [0, 1]  # no seed: 0


def test_soft_targets_of_one_teacher_and_of_an_ensemble():
    from sprkd_cli.methods.targets import ensemble_targets, soft_targets, teacher_targets

    torch.manual_seed(0)
    teachers = [nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train() for _ in range(2)]
    x = torch.randn(2100, 4)  # more than one chunk
    p, neg_entropy = teacher_targets(teachers[0], x, 2.0)
    assert teachers[0].training  # its mode is put back
    with torch.no_grad():
        expected = F.softmax(teachers[0].eval()(x) / 2.0, dim=1)
    assert torch.allclose(p, expected, atol=1e-6)
    assert torch.allclose(neg_entropy, (expected * expected.log()).sum(1), atol=1e-5)
    assert torch.equal(soft_targets(torch.log(expected) * 2.0, 2.0)[0].argmax(1), p.argmax(1))
    mean, mean_neg_entropy = ensemble_targets(teachers, x, 2.0)
    assert torch.allclose(mean, (p + teacher_targets(teachers[1], x, 2.0)[0]) / 2)
    assert torch.allclose(mean_neg_entropy, (mean * mean.log()).sum(1), atol=1e-5)


def test_safetensors_files_round_trip_and_a_pickle_is_refused_with_one_message(tmp_path):
    from sprkd_cli.engine.safetensors_io import read_metadata, read_tensors, write_tensors

    tensors = {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.tensor([True, False])}  # a not contiguous
    path = tmp_path / "sub" / "x.safetensors"
    write_tensors(path, tensors, {"k": "v"})
    back, metadata = read_tensors(path, "thing")
    assert metadata == {"k": "v"} and read_metadata(path) == {"k": "v"}
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert not path.with_name(path.name + ".partial").exists()
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UserError, match="thing .*evil.safetensors is not a safetensors file .*pickled"):
        read_tensors(evil, "thing")
    assert read_metadata(evil) == {}
    with pytest.raises(UserError, match="thing .*missing; the run's artifacts were moved or deleted"):
        read_tensors(tmp_path / "gone.safetensors", "thing")
