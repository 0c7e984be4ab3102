"""`sprkd hessian-report` on a bert-base teacher: peak resident memory and time, with the probe set's
gradient graphs kept whole and cut into micro-batches (--probe-micro-batch).

The teacher is bert-base's shape (transformers' BertConfig(): 12 layers, hidden 768, 110M parameters)
with random weights, built here (nothing is downloaded), trained for one epoch on generated SST-2-shaped
sentences padded to 66 tokens. Each report runs in its own process; its peak resident memory is that
process's (getrusage of the child). The same report, same probe set and seed, is made with each
micro-batch size, so the eigenvalues can be compared.

The default probe set here is small (--probe-size 8, one batch, top-1 eigenvalue): on 2 CPU cores one
Hessian-vector product of bert-base costs seconds per probe sentence, so the command's own default
(2 x 256 sentences, top 5 and bottom 1) would take hours.

Run: python bench/hessian_memory_bench.py [--probe-size 8] [--micro 8,2] [--top-k 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from text_bench import write_sst2  # the same SST-2-shaped files as the text bench

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:], "
           "capture_output=True, text=True); print(json.dumps({'rc': r.returncode, 'out': r.stdout, 'err': r.stderr, "
           "'seconds': time.perf_counter() - t, 'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")


def write_bert(folder: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, BertTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + [f"w{i}" for i in range(30522 - len(SPECIAL))]) + "\n")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2)).save_pretrained(folder)
    BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)


def measured(args: list[str], env: dict) -> dict:
    line = subprocess.run([sys.executable, "-c", "import json; " + MEASURE, *args], env=env, capture_output=True,
                          text=True, check=True).stdout
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe-size", type=int, default=8)
    parser.add_argument("--probe-batches", type=int, default=1)
    parser.add_argument("--micro", default="8,2", help="micro-batch sizes to compare, comma-separated")
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--bottom-k", type=int, default=0)
    args = parser.parse_args()
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_bert(tmp / "bert-base")
        write_sst2(tmp / "glue", 48)
        env["SPRKD_ARTIFACTS"] = str(tmp / "runs")
        sprkd = [sys.executable, "-m", "sprkd_cli", "--db", str(tmp / "runs.db")]
        started = time.perf_counter()
        teacher = measured([*sprkd, "train-teacher", "--dataset", "sst2", "--data-dir", str(tmp / "glue"),
                            "--model", f"hf:{tmp / 'bert-base'}", "--epochs", "1", "--batch-size", "16", "--json"], env)
        if teacher["rc"]:
            raise SystemExit(f"train-teacher failed: {teacher['err'][-800:]}")
        run = json.loads(teacher["out"])
        print(f"bert-base teacher: {run['n_params']:,} parameters, trained in {time.perf_counter() - started:.0f} s "
              f"(peak RSS {teacher['peak_kb'] / 2**20:.2f} GB); load average {os.getloadavg()[0]:.2f}")
        print()
        print("| --probe-micro-batch | graphs | seconds | peak RSS GB | HVPs | top eigenvalue | iterations | converged "
              "|")
        print("|---|---|---|---|---|---|---|---|")
        for micro in [int(m) for m in args.micro.split(",")]:
            out = measured([*sprkd, "hessian-report", run["run_id"], "--probe-batches", str(args.probe_batches),
                            "--probe-size", str(args.probe_size), "--top-k", str(args.top_k), "--bottom-k",
                            str(args.bottom_k), "--probe-micro-batch", str(micro), "--hvp", "double", "--json"], env)
            if out["rc"]:
                print(f"| {micro} | failed ({out['rc']}): {out['err'].strip()[-300:]} |")
                continue
            report = json.loads(out["out"])
            graphs = "kept" if report["micro_batch"] is None else f"recomputed, {report['micro_batch']} at a time"
            print(f"| {micro} | {graphs} | {out['seconds']:.0f} | {out['peak_kb'] / 2**20:.2f} | {report['n_hvp']} | "
                  f"{report['top_eigenvalues'][0]:.6g} | {report['iterations']} | {all(report['converged'])} |")
        print(f"\nprobe set: {args.probe_batches} x {args.probe_size} sentences of 66 tokens; "
              f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
