"""The research's vision models (malaria CNNs, CIFAR ResNets, WRNs), the seeded batch augmentation,
device selection, and what enters the config hash."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from sprkd_cli.config import TrainConfig
from sprkd_cli.engine.augment import CropFlip
from sprkd_cli.engine.device import resolve_device
from sprkd_cli.errors import UserError
from sprkd_cli.methods import declared_options
from sprkd_cli.methods.kd.method import KD
from sprkd_cli.models import build_model, count_parameters

VISION_MODELS = ["malaria-teacher", "malaria-student", "resnet20", "resnet56", "resnet8x4", "resnet32x4",
                 "wrn-16-2", "wrn-40-2"]


def test_malaria_models_have_the_research_parameter_counts():
    assert count_parameters(build_model("malaria-teacher", (3, 32, 32), 2)) == 25_546
    assert count_parameters(build_model("malaria-student", (3, 32, 32), 2)) == 6_430
    teacher = build_model("malaria-teacher", (3, 32, 32), 2)
    convs = [m for m in teacher.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == \
        [(3, 4, (3, 3), (0, 0)), (4, 8, (3, 3), (0, 0))]
    assert [m.out_features for m in teacher.modules() if isinstance(m, nn.Linear)] == [16, 2]
    student = build_model("malaria-student", (3, 32, 32), 2)
    assert [m.out_channels for m in student.modules() if isinstance(m, nn.Conv2d)] == [2, 4]
    assert [m.out_features for m in student.modules() if isinstance(m, nn.Linear)] == [8, 2]
    assert sum(isinstance(m, nn.MaxPool2d) for m in teacher.modules()) == 1
    assert sum(isinstance(m, nn.Dropout) for m in teacher.modules()) == 1


# The zoo's published sizes (CRD, Tian et al. 2020, Table 1, CIFAR-100): 0.28M, 0.86M, 1.23M, 7.43M, 0.70M, 2.26M.
@pytest.mark.parametrize("name, params", [("resnet20", 278_324), ("resnet56", 861_620), ("resnet8x4", 1_233_540),
                                          ("resnet32x4", 7_433_860), ("wrn-16-2", 703_284), ("wrn-40-2", 2_255_156)])
def test_cifar_models_match_the_zoo_sizes_on_cifar100(name, params):
    assert count_parameters(build_model(name, (3, 32, 32), 100)) == params


@pytest.mark.parametrize("name", VISION_MODELS)
@pytest.mark.parametrize("shape, classes", [((3, 32, 32), 10), ((1, 28, 28), 7)])
def test_forward_shape_and_embed_body_compose(name, shape, classes):
    torch.manual_seed(0)
    model = build_model(name, shape, classes).eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        out = model(x)
        composed = model.body(model.embed(x))
    assert out.shape == (3, classes) and torch.isfinite(out).all()
    assert torch.equal(out, composed)
    # embed is the input layer: it holds the first convolution, which reads the data set's channels
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert any(m is first_conv for m in model.embed.modules()) and first_conv.in_channels == shape[0]
    assert not any(m is first_conv for m in model.body.modules())
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_models_are_seeded():
    torch.manual_seed(3)
    a = build_model("resnet20", (3, 32, 32), 10)
    torch.manual_seed(3)
    b = build_model("resnet20", (3, 32, 32), 10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_model_inputs_are_user_errors():
    with pytest.raises(UserError, match="resnet depth"):
        build_model("resnet20:depth=21", (3, 32, 32), 10)
    with pytest.raises(UserError, match="wrn depth"):
        build_model("wrn-16-2:depth=15", (3, 32, 32), 10)
    with pytest.raises(UserError, match="images"):
        build_model("malaria-teacher", (16,), 2)


# --- augmentation -----------------------------------------------------------------------------------------


def test_crop_flip_is_a_shifted_window_of_the_padded_image_possibly_mirrored():
    x = torch.randn(64, 3, 8, 8)
    augment = CropFlip(seed=5, padding=2)
    replay = torch.Generator().set_state(augment.generator.get_state())
    out = augment(x)
    shifts = torch.randint(0, 5, (64, 2), generator=replay)
    flips = torch.rand(64, generator=replay) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(64):
        sy, sx = shifts[n].tolist()
        window = padded[n, :, sy:sy + 8, sx:sx + 8]
        assert torch.equal(out[n], window.flip(-1) if flips[n] else window)
    assert 10 < int(flips.sum()) < 54 and len({tuple(s) for s in shifts.tolist()}) > 5
    assert torch.equal(CropFlip(seed=5, padding=2)(x), out)  # same seed, same crops
    assert not torch.equal(CropFlip(seed=6, padding=2)(x), out)


def test_crop_flip_without_padding_only_flips():
    x = torch.randn(32, 1, 5, 5)
    out = CropFlip(seed=0, padding=0)(x)
    for n in range(32):
        assert torch.equal(out[n], x[n]) or torch.equal(out[n], x[n].flip(-1))


def test_kd_per_batch_targets_equal_the_cached_ones_on_the_same_inputs():
    torch.manual_seed(0)
    teacher = build_model("malaria-teacher", (3, 12, 12), 2).eval()
    student = build_model("malaria-student", (3, 12, 12), 2).eval()  # no dropout: the same logits twice

    class Data:
        x_train = torch.randn(20, 3, 12, 12)

    options = declared_options("kd", {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9})
    cached, per_batch = KD(options, [teacher], Data), KD(options, [teacher], Data, augmented=True)
    assert not hasattr(per_batch, "p_teacher")  # nothing computed from the (changing) inputs up front
    index = torch.tensor([3, 7, 11, 2])
    y = torch.tensor([0, 1, 1, 0])
    x = Data.x_train[index]
    assert torch.allclose(cached.loss(student, x, y, index), per_batch.loss(student, x, y, index), atol=1e-6)
    shifted = x.roll(1, dims=-1)  # other pixels: only the per-batch teacher sees them
    assert not torch.allclose(cached.loss(student, shifted, y, index), per_batch.loss(student, shifted, y, index))


# --- device -----------------------------------------------------------------------------------------------


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    with pytest.raises(UserError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda"):
            resolve_device("cuda")


# --- the config hash --------------------------------------------------------------------------------------


def test_how_data_are_fetched_and_where_it_trains_are_not_part_of_the_experiment():
    base = TrainConfig(kind="teacher", method="sgd", dataset="malaria", model="malaria-teacher")
    same = [dataclasses.replace(base, download=True), dataclasses.replace(base, device="cuda")]
    assert {c.config_hash() for c in same} == {base.config_hash()}
    # Another folder may hold other files under the same dataset name: reuse must not mix them.
    different = [dataclasses.replace(base, image_size=64), dataclasses.replace(base, augment=True),
                 dataclasses.replace(base, data_dir="/elsewhere")]
    assert len({c.config_hash() for c in different} | {base.config_hash()}) == 4
    assert TrainConfig.from_dict(dataclasses.replace(base, image_size=64, augment=True).to_dict()).image_size == 64


def test_augmented_training_is_reproducible_and_differs_from_plain():
    from sprkd_cli.data import Splits
    from sprkd_cli.engine import fit
    from sprkd_cli.methods.sgd.method import SGD

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 3, 12, 12, generator=g), torch.arange(60) % 2
    data = Splits("tiny", x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:], n_classes=2, split_seed=0)

    def train(augment: bool):
        cfg = TrainConfig(kind="teacher", method="sgd", dataset="tiny", model="malaria-student", epochs=2,
                          batch_size=8, augment=augment)
        torch.manual_seed(0)
        model = build_model("malaria-student", (3, 12, 12), 2)
        fit(model, SGD(), data, cfg)
        return [p.detach().clone() for p in model.parameters()]

    first, again, plain = train(True), train(True), train(False)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, plain))


def test_the_default_image_size_hashes_like_the_same_size_given():
    from sprkd_cli.cli.train import _config

    def cfg(dataset, **extra):
        return _config("teacher", "sgd", dataset, "malaria-teacher", 0, {"epochs": 1} | extra)

    assert cfg("malaria").image_size == 32
    assert cfg("malaria").config_hash() == cfg("malaria", image_size=32).config_hash()
    assert cfg("malaria").config_hash() != cfg("malaria", image_size=64).config_hash()
    assert cfg("digits").image_size is None
