"""Image datasets: the malaria folder (published layout, decoded once and cached), MNIST/Fashion-MNIST
and CIFAR-10/100 from files in their published formats, their one-line errors, McNemar's exact test,
and the CLI end to end on a tiny malaria folder. Nothing here touches the network."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from sprkd_cli.data import load_dataset
from sprkd_cli.data import malaria as malaria_module
from sprkd_cli.data import source as source_module
from sprkd_cli.data.malaria import decode_image, malaria_tensors
from sprkd_cli.data.source import DataSource, cache_root
from sprkd_cli.data.vision import STATS
from sprkd_cli.errors import UserError
from sprkd_cli.stats import mcnemar_exact

from conftest import assert_user_error, open_test_store, sprkd, sprkd_json

N_PARASITIZED, N_UNINFECTED = 25, 15


def write_malaria(root, n_parasitized=N_PARASITIZED, n_uninfected=N_UNINFECTED, seed=0):
    """The published layout: cell_images/{Parasitized,Uninfected}/*.png of varying (non-square) sizes,
    a disc of colour on black like a cell crop, plus the stray Thumbs.db files the real folder holds."""
    rng = np.random.default_rng(seed)
    for name, n, colour in (("Parasitized", n_parasitized, (200, 90, 160)),
                            ("Uninfected", n_uninfected, (220, 150, 140))):
        folder = root / "cell_images" / name
        folder.mkdir(parents=True)
        for i in range(n):
            h, w = int(rng.integers(40, 160)), int(rng.integers(40, 160))
            yy, xx = np.mgrid[:h, :w]
            image = np.zeros((h, w, 3), np.uint8)
            disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2.2) ** 2
            image[disc] = np.clip(rng.normal(colour, 20, size=(int(disc.sum()), 3)), 0, 255)
            Image.fromarray(image).save(folder / f"C{i}_cell.png")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    return root


@pytest.fixture
def malaria_dir(tmp_path):
    return write_malaria(tmp_path / "malaria")


# --- malaria ------------------------------------------------------------------------------------------


def test_malaria_counts_shapes_and_stratified_split(malaria_dir):
    data = load_dataset("malaria", 0, data_dir=str(malaria_dir))
    assert data.n_classes == 2 and data.input_shape == (3, 32, 32)
    for n, label in ((N_PARASITIZED, 0), (N_UNINFECTED, 1)):
        per_split = {s: int((data.split(s)[1] == label).sum()) for s in ("train", "val", "test")}
        assert sum(per_split.values()) == n  # Thumbs.db skipped, every image in exactly one split
        assert per_split["test"] == round(0.2 * n) and per_split["val"] == round(0.1 * n)
    x = torch.cat([data.x_train, data.x_val, data.x_test])
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    other = load_dataset("malaria", 1, data_dir=str(malaria_dir))
    assert not torch.equal(data.x_test, other.x_test)
    assert torch.equal(load_dataset("malaria", 0, data_dir=str(malaria_dir)).x_test, data.x_test)


def test_malaria_pixels_are_the_resized_rgb_images(malaria_dir):
    images, labels = malaria_tensors(DataSource(data_dir=str(malaria_dir)), 32)
    assert images.shape == (N_PARASITIZED + N_UNINFECTED, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0] * N_PARASITIZED + [1] * N_UNINFECTED
    first = sorted((malaria_dir / "cell_images" / "Parasitized").glob("*.png"))[0]
    expected = np.asarray(Image.open(first).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(images[0].permute(1, 2, 0).numpy(), expected)


def test_malaria_second_load_reads_the_cache_without_decoding(malaria_dir, monkeypatch):
    calls = []
    real = malaria_module.decode_image
    monkeypatch.setattr(malaria_module, "decode_image", lambda *a: calls.append(a) or real(*a))
    first = load_dataset("malaria", 0, data_dir=str(malaria_dir))
    assert len(calls) == N_PARASITIZED + N_UNINFECTED
    assert len(list(cache_root().glob("malaria-32px-*.pt"))) == 1 and not (malaria_dir / "cache").exists()

    def no_decoding(*args):
        raise AssertionError("decoded although the cache is current")

    monkeypatch.setattr(malaria_module, "decode_image", no_decoding)
    second = load_dataset("malaria", 0, data_dir=str(malaria_dir))
    for split in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(first.split(split), second.split(split)))

    # a changed folder or another image size is decoded again, into its own cache file
    monkeypatch.setattr(malaria_module, "decode_image", lambda *a: calls.append(a) or real(*a))
    calls.clear()
    small = load_dataset("malaria", 0, data_dir=str(malaria_dir), image_size=16)
    assert small.input_shape == (3, 16, 16) and len(calls) == N_PARASITIZED + N_UNINFECTED
    extra = malaria_dir / "cell_images" / "Uninfected" / "C_extra.png"
    Image.fromarray(np.full((50, 60, 3), 128, np.uint8)).save(extra)
    calls.clear()
    grown = load_dataset("malaria", 0, data_dir=str(malaria_dir))
    assert len(calls) == N_PARASITIZED + N_UNINFECTED + 1
    assert len(grown.y_train) + len(grown.y_val) + len(grown.y_test) == N_PARASITIZED + N_UNINFECTED + 1
    assert len(list(cache_root().glob("*.pt"))) == 3


def test_malaria_reports_decoding_progress(malaria_dir):
    seen = []
    load_dataset("malaria", 0, data_dir=str(malaria_dir), progress=lambda what, done, total: seen.append((done, total)))
    total = N_PARASITIZED + N_UNINFECTED
    assert seen[0] == (0, total) and seen[-1] == (total, total)


def test_malaria_folder_given_as_cell_images_itself(malaria_dir):
    data = load_dataset("malaria", 0, data_dir=str(malaria_dir / "cell_images"))
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == N_PARASITIZED + N_UNINFECTED


def _files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_malaria_caches_stay_out_of_the_data_folder(tmp_path, malaria_dir, db, monkeypatch):
    """--data-dir at cell_images/ itself, twice: the second run reads the cache, which is not in the data
    folder (a cache/ there would be a third class, with no images, to torchvision's ImageFolder)."""
    from torchvision.datasets import ImageFolder

    cells = malaria_dir / "cell_images"
    before = _files_under(malaria_dir)
    args = ["train-teacher", "--dataset", "malaria", "--data-dir", str(cells), "--model", "malaria-teacher",
            "--epochs", "1", "--device", "cpu"]
    first = sprkd_json(db, *args)
    [cache] = (tmp_path / "artifacts" / "cache").glob("malaria-32px-*.pt")  # in the artifact root: runs/cache
    monkeypatch.setattr(malaria_module, "decode_image", lambda *a: pytest.fail("decoded although cached"))
    second = sprkd_json(db, *args, "--seed", "1")
    assert first["status"] == second["status"] == "finished"
    assert _files_under(malaria_dir) == before
    assert ImageFolder(str(cells)).classes == ["Parasitized", "Uninfected"]

    # --cache-dir (or $SPRKD_CACHE_DIR) puts it elsewhere, and is not part of the experiment
    monkeypatch.undo()
    elsewhere = sprkd_json(db, *args, "--seed", "2", "--cache-dir", str(tmp_path / "mine"))
    monkeypatch.setenv("SPRKD_CACHE_DIR", str(tmp_path / "env"))
    from_env = sprkd_json(db, *args, "--seed", "3")
    assert ([p.name for p in (tmp_path / "mine").iterdir()] == [p.name for p in (tmp_path / "env").iterdir()]
            == [cache.name])
    store = open_test_store(db)
    hashes = {store.get_run(r["run_id"]).config_hash for r in (first, second, elsewhere, from_env)}
    assert len(hashes) == 1 and _files_under(malaria_dir) == before

    # a cache folder inside the malaria folder is refused, in one line, before anything is written
    assert_user_error(sprkd(db, *args, "--seed", "4", "--cache-dir", str(cells / "cache")),
                      str(cells), "--cache-dir", "third class")
    assert _files_under(malaria_dir) == before


def test_malaria_errors_are_one_clear_line(tmp_path, malaria_dir, db):
    missing = tmp_path / "nowhere"
    line = assert_user_error(sprkd(db, "train-teacher", "--dataset", "malaria", "--data-dir", str(missing),
                                   "--model", "malaria-teacher"), str(missing), "Parasitized", "--download")
    assert "cell_images" in line

    for png in (malaria_dir / "cell_images" / "Uninfected").glob("*.png"):
        png.unlink()
    assert_user_error(sprkd(db, "train-teacher", "--dataset", "malaria", "--data-dir", str(malaria_dir)),
                      "no images in", str(malaria_dir / "cell_images" / "Uninfected"))

    broken = write_malaria(tmp_path / "broken", 4, 4)
    corrupt = broken / "cell_images" / "Parasitized" / "C2_cell.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated
    assert_user_error(sprkd(db, "train-teacher", "--dataset", "malaria", "--data-dir", str(broken)),
                      "cannot decode image", str(corrupt))
    assert_user_error(sprkd(db, "train-teacher", "--dataset", "malaria", "--data-dir", str(broken),
                            "--image-size", "2"), "--image-size")
    assert not open_test_store(db).list_runs()


def test_malaria_download_without_network_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(malaria_module, "reachable", lambda url, timeout=5.0: False)
    with pytest.raises(UserError, match="huggingface.co cannot be reached") as info:
        load_dataset("malaria", 0, data_dir=str(tmp_path), download=True)
    assert "\n" not in str(info.value) and str(tmp_path / "cell_images") in str(info.value)


def test_reachable_gives_up_quickly_on_a_closed_port():
    import socket

    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert source_module.reachable(f"http://127.0.0.1:{port}/", timeout=2.0) is False


# --- MNIST / Fashion-MNIST: idx files as torchvision expects them in <root>/<Class>/raw/ ----------------


def write_idx(path, array: np.ndarray, gz: bool = False):
    magic = 2051 if array.ndim == 3 else 2049
    payload = (struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
               + array.astype(np.uint8).tobytes())
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root, folder="MNIST", n_train=60, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("name, folder, gz", [("mnist", "MNIST", False), ("fashion-mnist", "FashionMNIST", True)])
def test_mnist_like_from_idx_files(tmp_path, name, folder, gz):
    arrays = write_mnist(tmp_path, folder, gz=gz)
    data = load_dataset(name, 3, data_dir=str(tmp_path))
    assert data.input_shape == (1, 28, 28) and data.n_classes == 10
    images, labels = arrays["t10k"]
    assert data.y_test.tolist() == labels.tolist()  # the official test split, in order
    (mean,), (sd,) = STATS[name]
    assert torch.allclose(data.x_test[:, 0], (torch.from_numpy(images).float() / 255 - mean) / sd, atol=1e-6)
    assert torch.bincount(data.y_val, minlength=10).tolist() == [1] * 10  # 10% of each class's 6
    assert len(data.y_train) == 50
    train_images, _ = arrays["train"]

    def as_rows(x):
        return {tuple(r) for r in (x[:, 0] * sd + mean).mul(255).round().int().reshape(len(x), -1).tolist()}

    train_rows, val_rows = as_rows(data.x_train), as_rows(data.x_val)
    assert not train_rows & val_rows  # disjoint, and together the official training split
    assert train_rows | val_rows == {tuple(r) for r in train_images.reshape(60, -1).tolist()}
    assert not torch.equal(load_dataset(name, 4, data_dir=str(tmp_path)).x_val, data.x_val)


def test_mnist_validation_split_is_stratified(tmp_path):
    write_mnist(tmp_path, n_train=200)
    data = load_dataset("mnist", 0, data_dir=str(tmp_path))
    assert torch.bincount(data.y_val, minlength=10).tolist() == [2] * 10
    assert torch.bincount(data.y_train, minlength=10).tolist() == [18] * 10


# --- CIFAR: the python batches, pickled dicts of uint8 rows ---------------------------------------------


def write_cifar(root, hundred=False, per_batch=12, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    k = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    train = []
    for name in names + ["test"]:
        n = n_test if name == "test" else per_batch * (5 if hundred else 1)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, k, n)]
        batch = {"batch_label": name, "data": data, "filenames": [f"{i}.png" for i in range(n)]}
        batch |= {"fine_labels": labels, "coarse_labels": [v // 5 for v in labels]} if hundred else {"labels": labels}
        with open(folder / ("test_batch" if name == "test" and not hundred else name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
        if name != "test":
            train.append((data, labels))
    meta = ({"fine_label_names": [str(i) for i in range(100)]} if hundred
            else {"label_names": [str(i) for i in range(10)]})
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return data, labels, train


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_from_python_batches(tmp_path, hundred):
    test_data, test_labels, train = write_cifar(tmp_path, hundred)
    name = "cifar100" if hundred else "cifar10"
    data = load_dataset(name, 0, data_dir=str(tmp_path))
    assert data.input_shape == (3, 32, 32) and data.n_classes == (100 if hundred else 10)
    assert data.y_test.tolist() == test_labels
    mean, sd = (torch.tensor(v).view(1, 3, 1, 1) for v in STATS[name])
    raw = torch.from_numpy(test_data).reshape(-1, 3, 32, 32).float() / 255
    assert torch.allclose(data.x_test, (raw - mean) / sd, atol=1e-6)
    train_labels = np.concatenate([labels for _, labels in train])
    assert len(data.y_train) + len(data.y_val) == len(train_labels) == 60
    counts = np.bincount(train_labels, minlength=data.n_classes)
    assert torch.bincount(data.y_val, minlength=data.n_classes).tolist() == [round(0.1 * c) for c in counts]


def test_cifar_batch_that_would_run_code_is_refused(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(UserError, match="data_batch_3.*not allowed"):
        load_dataset("cifar10", 0, data_dir=str(tmp_path))


@pytest.mark.parametrize("name, where, needles", [
    ("mnist", "MNIST/raw", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "--download"]),
    ("fashion-mnist", "FashionMNIST/raw", ["train-images-idx3-ubyte", "--download"]),
    ("cifar10", "cifar-10-batches-py", ["cifar-10-python.tar.gz", "data_batch_1", "test_batch", "--download"]),
    ("cifar100", "cifar-100-python", ["cifar-100-python.tar.gz", "train, test", "--download"]),
])
def test_missing_torchvision_files_say_where_to_put_them(tmp_path, db, name, where, needles):
    result = sprkd(db, "train-teacher", "--dataset", name, "--data-dir", str(tmp_path), "--model", "resnet20")
    assert_user_error(result, str(tmp_path / where), *needles)


@pytest.mark.parametrize("name, host", [("mnist", "ossci-datasets.s3.amazonaws.com"),
                                        ("cifar10", "www.cs.toronto.edu")])
def test_download_without_network_is_one_clear_line(tmp_path, monkeypatch, name, host):
    from sprkd_cli.data import vision

    monkeypatch.setattr(vision, "reachable", lambda url, timeout=5.0: False)
    with pytest.raises(UserError, match=f"cannot reach .*{host}") as info:
        load_dataset(name, 0, data_dir=str(tmp_path), download=True)
    assert "\n" not in str(info.value)


def test_image_size_is_for_malaria_only(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(UserError, match="--image-size applies to malaria only"):
        load_dataset("mnist", 0, data_dir=str(tmp_path), image_size=32)


# --- McNemar's exact test -------------------------------------------------------------------------------


@pytest.mark.parametrize("b, c, both_right, both_wrong", [(0, 0, 5, 1), (7, 2, 30, 4), (1, 12, 3, 0), (25, 25, 0, 0),
                                                          (40, 17, 100, 9), (0, 6, 2, 2)])
def test_mcnemar_matches_scipy_exact_binomial(b, c, both_right, both_wrong):
    # hand-made predictions with exactly b (A right, B wrong) and c (A wrong, B right) discordant examples
    labels, pred_a, pred_b = [], [], []
    for count, a_right, b_right in ((b, True, False), (c, False, True), (both_right, True, True),
                                    (both_wrong, False, False)):
        for i in range(count):
            y = i % 3
            labels.append(y)
            pred_a.append(y if a_right else (y + 1) % 3)
            pred_b.append(y if b_right else (y + 2) % 3)
    result = mcnemar_exact(pred_a, pred_b, labels)
    assert (result.b, result.c, result.n) == (b, c, len(labels))
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert result.acc_a == pytest.approx((b + both_right) / len(labels))


# --- the CLI end to end on a tiny malaria folder ------------------------------------------------------------


def test_cli_malaria_teacher_student_and_mcnemar(tmp_path, db):
    root = write_malaria(tmp_path / "m", 20, 20, seed=1)
    common = ["--dataset", "malaria", "--data-dir", str(root), "--epochs", "2", "--batch-size", "16", "--lr", "1e-2",
              "--device", "cpu"]
    teacher = sprkd_json(db, "train-teacher", *common, "--model", "malaria-teacher")
    assert teacher["status"] == "finished" and teacher["n_params"] == 25_546
    store = open_test_store(db)
    run = store.get_run(teacher["run_id"])
    assert run.device == "cpu" and run.config["data"]["input_shape"] == [3, 32, 32]
    assert run.config["data_dir"] == str(root) and run.config["augment"] is False
    assert len(store.predictions(run.id)) == 8  # 20% of 40 examples

    kd = sprkd_json(db, "distill", *common, "--method", "kd", "--student", "malaria-student", "--augment",
                    "--teacher", teacher["run_id"], "--seed", "1")
    assert kd["status"] == "finished" and kd["n_params"] == 6_430
    sgd = sprkd_json(db, "distill", *common, "--method", "sgd", "--student", "malaria-student", "--seed", "1")

    result = sprkd_json(db, "stats", "--mcnemar", kd["run_id"], sgd["run_id"])
    pa, pb = store.predictions(kd["run_id"]), store.predictions(sgd["run_id"])
    expected = mcnemar_exact([p.predicted for p in pa], [p.predicted for p in pb], [p.label for p in pa])
    assert (result["b"], result["c"], result["n"]) == (expected.b, expected.c, 8)
    assert result["p_value"] == pytest.approx(expected.p_value)
    assert result["warnings"] == []
    table = sprkd(db, "stats", "--mcnemar", kd["run_id"], sgd["run_id"])
    assert table.exit_code == 0 and "exact two-sided p" in table.stdout

    assert_user_error(sprkd(db, "distill", *common, "--method", "kd", "--student", "malaria-student",
                            "--teacher", teacher["run_id"], "--image-size", "16"), "(3, 32, 32)", "(3, 16, 16)",
                      "--image-size")
    other_split = sprkd_json(db, "distill", *common, "--method", "sgd", "--student", "malaria-student",
                             "--split-seed", "5")
    assert_user_error(sprkd(db, "stats", "--mcnemar", kd["run_id"], other_split["run_id"]),
                      "not tested on the same examples", "split seed 0", "split seed 5")


def test_cli_device_and_augment_errors(db, malaria_dir):
    common = ["train-teacher", "--dataset", "malaria", "--data-dir", str(malaria_dir), "--model", "malaria-teacher"]
    assert_user_error(sprkd(db, *common, "--device", "tpu"), "bad --device 'tpu'", "auto", "cuda", "mps")
    if not torch.cuda.is_available():
        assert_user_error(sprkd(db, *common, "--device", "cuda"), "--device cuda", "--device cpu")
    assert_user_error(sprkd(db, "train-teacher", "--dataset", "synthetic:n=200", "--augment"), "--augment", "shape")


def test_an_image_whose_header_claims_a_huge_size_is_one_line(tmp_path):
    """A PNG header of 30000x30000 pixels (a decompression bomb for Pillow) is an undecodable image."""
    import struct
    import zlib

    from sprkd_cli.errors import UserError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(UserError, match="cannot decode image .*bomb.png"):
        decode_image(str(bomb), 32)
