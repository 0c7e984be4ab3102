"""Datasets, splits and models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sprkd_cli.data import load_dataset
from sprkd_cli.data.splits import stratified_split
from sprkd_cli.errors import UserError
from sprkd_cli.models import build_model, count_parameters, model_names

# --- splits -------------------------------------------------------------------------------------


def test_split_is_fixed_by_split_seed():
    a, b = load_dataset("digits", 3), load_dataset("digits", 3)
    c = load_dataset("digits", 4)
    for name in ("train", "val", "test"):
        xa, ya = a.split(name)
        xb, yb = b.split(name)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.describe() == b.describe()
    assert not torch.equal(a.x_test, c.x_test)
    assert a.describe()["fingerprint"] != c.describe()["fingerprint"]
    # the data seed of synthetic data is not the split seed
    s0, s1 = load_dataset("synthetic:n=200,classes=4", 0), load_dataset("synthetic:n=200,classes=4", 1)
    assert not torch.equal(s0.x_test, s1.x_test)
    assert torch.equal(torch.sort(torch.cat([s0.y_train, s0.y_val, s0.y_test])).values,
                       torch.sort(torch.cat([s1.y_train, s1.y_val, s1.y_test])).values)


@pytest.mark.parametrize("seed", [0, 1, 17])
def test_stratified_split_is_disjoint_covering_and_stratified(seed):
    labels = np.repeat(np.arange(5), [40, 55, 61, 100, 13])
    np.random.default_rng(99).shuffle(labels)
    train, val, test = stratified_split(labels, seed, 0.1, 0.2)
    together = np.concatenate([train, val, test])
    assert len(together) == len(labels) == len(set(together.tolist()))  # disjoint
    assert set(together.tolist()) == set(range(len(labels)))  # covering
    for label, size in zip(range(5), (40, 55, 61, 100, 13)):
        assert int((labels[test] == label).sum()) == round(0.2 * size)
        assert int((labels[val] == label).sum()) == round(0.1 * size)
        assert int((labels[train] == label).sum()) == size - round(0.2 * size) - round(0.1 * size)
    again = stratified_split(labels, seed, 0.1, 0.2)
    assert all(np.array_equal(p, q) for p, q in zip((train, val, test), again))
    other = stratified_split(labels, seed + 1, 0.1, 0.2)
    assert not np.array_equal(test, other[2])


def test_digits_split_is_stratified_disjoint_and_covers_the_dataset():
    splits = load_dataset("digits", 0)
    x = torch.cat([splits.x_train, splits.x_val, splits.x_test])
    y = torch.cat([splits.y_train, splits.y_val, splits.y_test])
    assert len(y) == 1797
    counts = {name: torch.bincount(splits.split(name)[1], minlength=10) for name in ("train", "val", "test")}
    total = torch.bincount(y, minlength=10)
    for k in range(10):
        assert counts["test"][k] == round(0.2 * int(total[k]))
        assert counts["val"][k] == round(0.1 * int(total[k]))
    # every image appears exactly as often as in the full dataset (no row lost or duplicated)
    from sklearn.datasets import load_digits

    reference = load_digits()
    ref = np.concatenate([reference.data / 16.0, reference.target[:, None]], axis=1)
    ours = np.concatenate([x.reshape(len(x), -1).numpy().astype(np.float64), y.numpy()[:, None]], axis=1)
    assert np.array_equal(np.unique(ref, axis=0, return_counts=True)[1],
                          np.unique(ours, axis=0, return_counts=True)[1])
    assert np.array_equal(np.unique(ref, axis=0), np.unique(ours, axis=0))


def test_digits_equals_sklearn_load_digits():
    from sklearn.datasets import load_digits

    reference = load_digits()
    splits = load_dataset("digits", 5)
    assert splits.n_classes == 10
    assert splits.input_shape == (1, 8, 8)
    train, val, test = stratified_split(reference.target, 5, 0.1, 0.2)
    images = torch.from_numpy((reference.images / 16.0).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(reference.target.astype(np.int64))
    for name, index in (("train", train), ("val", val), ("test", test)):
        x, y = splits.split(name)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8)
        assert torch.equal(x, images[index])
        assert torch.equal(y, labels[index])
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(splits.x_train.max()) == 1.0
    assert sorted(torch.unique(splits.y_train).tolist()) == list(range(10))


def test_synthetic_options_and_errors():
    s = load_dataset("synthetic:n=300,features=5,classes=3", 0)
    assert s.input_shape == (5,) and s.n_classes == 3
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 300
    with pytest.raises(UserError, match="unknown option"):
        load_dataset("synthetic:size=3", 0)
    with pytest.raises(UserError, match="must be a int"):
        load_dataset("synthetic:n=many", 0)
    with pytest.raises(UserError, match="unknown dataset 'imagenet'; valid datasets: .*digits.*mnist.*synthetic"):
        load_dataset("imagenet", 0)
    with pytest.raises(UserError):
        load_dataset("digits:n=3", 0)


# --- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", model_names())
def test_every_model_is_embed_then_body(name):
    torch.manual_seed(0)
    model = build_model(name, (1, 8, 8), 10).eval()
    assert isinstance(model.embed, torch.nn.Module) and isinstance(model.body, torch.nn.Module)
    embed_params = {id(p) for p in model.embed.parameters()}
    body_params = {id(p) for p in model.body.parameters()}
    assert embed_params and body_params and not embed_params & body_params
    assert embed_params | body_params == {id(p) for p in model.parameters()}
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (7, 10)
        assert torch.equal(out, model.body(model.embed(x)))


def test_mlp_on_flat_inputs_is_embed_then_body():
    model = build_model("mlp:width=16,depth=3,dropout=0.5", (8,), 3).eval()
    x = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.equal(model(x), model.body(model.embed(x)))


def _mlp_params(inputs: int, width: int, depth: int, classes: int) -> int:
    return (inputs * width + width) + (depth - 1) * (width * width + width) + (width * classes + classes)


def test_preset_parameter_counts():
    digits = ((1, 8, 8), 10)
    assert count_parameters(build_model("mlp-large", *digits)) == 301_066
    assert count_parameters(build_model("mlp-large", *digits)) == _mlp_params(64, 512, 2, 10)
    assert count_parameters(build_model("mlp-small", *digits)) == _mlp_params(64, 32, 1, 10) == 2_410
    assert count_parameters(build_model("mlp", *digits)) == _mlp_params(64, 128, 2, 10)
    assert count_parameters(build_model("mlp:width=16,depth=1", (8,), 3)) == _mlp_params(8, 16, 1, 3)
    # cnn: 3x3 conv 1->16, 3x3 conv 16->32, linear 32->10
    assert count_parameters(build_model("cnn", *digits)) == (9 * 16 + 16) + (9 * 16 * 32 + 32) + (32 * 10 + 10)


def test_model_errors():
    with pytest.raises(UserError, match="unknown model 'resnet'; valid models: cnn, .*mlp, mlp-large, mlp-small, "
                                        "resnet20, "):
        build_model("resnet", (8,), 3)
    with pytest.raises(UserError, match="image inputs"):
        build_model("cnn", (8,), 3)
    with pytest.raises(UserError, match="valid options"):
        build_model("mlp:height=3", (8,), 3)
