"""The sprkd paper's experiment on the NIH malaria cell images, as one recipe (`make paper-sprkd DATA_DIR=...`).

1. An ensemble of weak teachers (malaria-teacher, `--teacher-epochs 1`, seeds 0..N-1), each tracked for
   saddle candidates.
2. One comparison over `--seeds` of three arms of malaria-student: sgd (the control), response KD from one weak
   teacher (`rkd=kd:temperature=1,ce_weight=0,kd_weight=1`) and sprkd from the whole tracked ensemble; every
   finished run gets its Hessian report (`--hessian`) and its noise accuracies (`--eval-noise`).
3. `stats` on each of the sources' claims: accuracy, epochs to a validation accuracy, the mean validation
   accuracy, the spread of the last epochs' validation loss (with Brown-Forsythe), the Hessian's top and
   smallest eigenvalue and trace, and accuracy under input noise; then McNemar's exact test on one seed's pair
   of sprkd and response-KD runs.

Every command is printed before it runs; finished runs are reused, so the recipe can be re-run or resumed.
    python recipes/paper_sprkd.py --data-dir ./data [--seeds 0-4] [--db runs.db]
"""

from __future__ import annotations

import argparse
import json

from common import claims_and_mcnemar, sprkd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding cell_images/ (or cell_images/ itself)")
    parser.add_argument("--db", default=None, help="the result store (default: sprkd's, ./runs.db or $SPRKD_DB)")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--teachers", type=int, default=3, help="weak teachers in sprkd's ensemble")
    parser.add_argument("--teacher-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15, help="student epochs")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--saddle-every", type=int, default=50)
    parser.add_argument("--converged-at", type=float, default=0.9, help="X of the epochs_to:X metric")
    parser.add_argument("--eval-noise", default="0.1,0.3")
    parser.add_argument("--last-epochs", type=int, default=5, help="K of the val_loss_sd:K metric")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    data = ["--dataset", "malaria", "--data-dir", args.data_dir, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size)]
    teachers = []
    for seed in range(args.teachers):
        outcome = json.loads(sprkd(args.db, "train-teacher", *data, "--model", "malaria-teacher", "--epochs",
                                   str(args.teacher_epochs), "--seed", str(seed), "--track-saddles", "--saddle-every",
                                   str(args.saddle_every), "--saddle-top-n", "16", "--reuse", "--json", capture=True))
        print(f"teacher {outcome['run_id']}: test_acc {outcome['test_acc']:.4f}, "
              f"{outcome.get('events', {}).get('saddles', 0)} saddle candidates", flush=True)
        teachers.append(outcome["run_id"])
    arms = ["--arm", "sgd", "--arm", f"rkd=kd:temperature=1,ce_weight=0,kd_weight=1,teacher={teachers[0]}",
            "--arm", f"sprkd=sprkd:teacher={'+'.join(teachers)}"]
    compare = ["compare", *data, "--student", "malaria-student", "--seeds", args.seeds, "--epochs", str(args.epochs),
               "--jobs", str(args.jobs), "--hessian", "--eval-noise", args.eval_noise, *arms]
    sprkd(args.db, *compare)
    result = json.loads(sprkd(args.db, *compare, "--json", capture=True))  # every run is reused now
    metrics = ["test_acc", f"epochs_to:{args.converged_at:g}", "auc_val_acc", f"val_loss_sd:{args.last_epochs}",
               "hessian.top1", "hessian.trace", "hessian.min",
               *(f"noise_acc:{s.strip()}" for s in args.eval_noise.split(",") if s.strip())]
    claims_and_mcnemar(args.db, "malaria", ["sgd", "rkd", "sprkd"], "malaria-student", metrics, result, "sprkd", "rkd")


if __name__ == "__main__":
    main()
