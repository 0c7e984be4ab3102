"""GPU throughput at BERT scale, every step a real sprkd command, measured side by side in one run.

The models are the published shapes built from their configs with random weights (cost does not depend on
the weights): bert-base-uncased as teacher (BertConfig() defaults: 12 layers, hidden 768, 110M parameters)
and distilbert-base-uncased as student (DistilBertConfig(): 6 layers, 66M), over a 30,522-word
vocabulary, on generated GLUE SST-2 files whose longest sentence pads every example to 66 tokens
(bench/text_bench.py's generators). Steps, each one `sprkd` process, batch 32:

  teacher-fp32   train-teacher, 1 epoch, --precision fp32
  teacher-bf16   the same, --precision bf16
  kd-bf16        distill --method kd, the distilbert student of teacher-fp32, 1 epoch, bf16
  sage-bf16      distill --method sage, the same student, 2 epochs with one round after the first, bf16
  hessian        hessian-report of teacher-fp32 with its defaults (the top eigenvalues on the probe set)

For each: the command's wall seconds, its work seconds (a run's summary `seconds`: its epochs with
their evaluation), the seconds outside that work (wall less training: imports, tokenising, loading, the
teacher's pass, saving), training samples per second, the peak GPU memory torch allocated (in the process
that trained) and the model FLOP utilisation: 6 · parameters · tokens per second (forward and backward;
the training tokens counted as the padded length) over the chip's peak, which the script measures first
as the best of a few large matmuls in the step's precision. A sage epoch holds its round, and the
hessian-report trains nothing: their samples/s and utilisation are left out (the hessian-report's work
seconds are the report's own `seconds`: its products and eigensolver). Then the goals: bf16 at
least 2x fp32 (teacher samples/s), at least 3,000 samples/s in bf16, at most 5 s of each command outside
training.

Without CUDA the script says so in one line and exits 0. `--device cpu --tiny` is a dry run of the same
steps on the CPU with a 2-layer, 32-wide BERT and student and 400 sentences: it proves the script, not
the figures. Everything (store, artifacts, data cache, models, data) goes to a temporary folder, but for
numba's cache of UMAP's compiled code (its own folder, as every sprkd command uses: a first sage round on
a machine compiles it once).

Run: python bench/gpu_scale.py [--n-train 14700] [--device cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
BATCH = 32
GOALS = {"bf16 / fp32": 2.0, "bf16 samples/s": 3000.0, "outside training s": 5.0}


def measured_peak(device: str, dtype_name: str, size: int = 8192, reps: int = 5) -> float:
    """The best FLOP/s of `reps` size³ matmuls in this dtype on this device (the utilisation's denominator)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    if device == "cpu":
        size = min(size, 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    for _ in range(reps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def parameters(folder: Path) -> int:
    """The parameter count of the model in `folder`, built on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


def padded_length(model: Path, csv: Path) -> int:
    """The tokens every example is padded to: the longest training sentence under the model's tokenizer."""
    import pandas as pd
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return max(len(ids) for ids in tokenizer(list(pd.read_csv(csv)["sentence"]))["input_ids"])


def build(work: Path, tiny: bool, n_train: int) -> tuple[Path, Path, Path]:
    """(teacher folder, student folder, GLUE folder)."""
    if tiny:
        from textdata import sst2_dir, tiny_model

        teacher = tiny_model(work / "teacher", layers=2)
        student = tiny_model(work / "student", kind="distilbert", layers=2, seed=1)
        return teacher, student, sst2_dir(work / "glue", n_train=n_train, n_val=100)
    from text_bench import write_models, write_sst2

    teacher, student = write_models(work)
    return teacher, student, write_sst2(work / "glue", n_train)


def command(work: Path, label: str, args: list[str], env: dict) -> dict:
    """`sprkd ARGS --json` in its own process (bench/gpu_check.py measure: the peak GPU memory too)."""
    tsv = work / "steps.tsv"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "measure", str(tsv), label, "--",
                           "--db", str(work / "runs.db"), *args, "--json"],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"  {label}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return {"label": label, "wall": wall, "failed": True}
    peak_mb = next((float(line.split("\t")[2]) for line in tsv.read_text().splitlines()
                    if line.split("\t")[0] == label), float("nan"))
    outcome = json.loads(proc.stdout)
    print(f"  {label}: {wall:.1f} s")
    return {"label": label, "wall": wall, "outcome": outcome, "peak_gb": peak_mb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 32-wide BERT and 400 sentences (dry run)")
    parser.add_argument("--n-train", type=int, default=None, help="training sentences (default 14,700; tiny 400)")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_scale: no CUDA GPU visible to torch here (torch.cuda.is_available() is False); nothing to measure")
        return
    n_train = args.n_train or (400 if args.tiny else 14_700)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env.update(SPRKD_ARTIFACTS=str(work / "artifacts"), SPRKD_CACHE_DIR=str(work / "cache"))
        teacher, student, glue = build(work, args.tiny, n_train)
        length = padded_length(teacher, glue / "train.csv")
        sizes = {"teacher": parameters(teacher), "student": parameters(student)}
        peaks = {p: measured_peak(args.device, p) for p in ("fp32", "bf16")}
        data = ["--dataset", "sst2", "--data-dir", str(glue), "--batch-size", str(BATCH), "--device", args.device,
                "--seed", "0"]
        print(f"gpu_scale on {args.device}: {n_train} training sentences padded to {length} tokens, batch {BATCH}; "
              f"teacher {sizes['teacher'] / 1e6:.2f}M, student {sizes['student'] / 1e6:.2f}M parameters; measured "
              f"matmul peak fp32 {peaks['fp32'] / 1e12:.1f}, bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s")
        steps = [command(work, "teacher-fp32", ["train-teacher", *data, "--model", f"hf:{teacher}", "--epochs", "1",
                                                "--precision", "fp32"], env)]
        teacher_run = steps[0].get("outcome", {}).get("run_id")
        steps.append(command(work, "teacher-bf16", ["train-teacher", *data, "--model", f"hf:{teacher}", "--epochs",
                                                    "1", "--precision", "bf16"], env))
        if teacher_run:
            student_args = ["--teacher", teacher_run, "--student", f"hf:{student}", "--precision", "bf16"]
            steps.append(command(work, "kd-bf16", ["distill", *data, "--method", "kd", *student_args, "--epochs", "1"],
                                 env))
            steps.append(command(work, "sage-bf16", ["distill", *data, "--method", "sage", *student_args, "--epochs",
                                                     "2", "--sage-every", "1", "--sage-rounds", "1"], env))
            steps.append(command(work, "hessian", ["hessian-report", teacher_run], env))
    report(steps, sizes, peaks, length, n_train)


def report(steps: list[dict], sizes: dict, peaks: dict, length: int, n_train: int) -> None:
    print()
    print("| step | wall s | work s | outside work s | samples/s | peak GPU GB | MFU |")
    print("|---|---|---|---|---|---|---|")
    rates = {}
    for step in steps:
        label = step["label"]
        if step.get("failed"):
            print(f"| {label} | {step['wall']:.1f} | failed | | | | |")
            continue
        seconds = step["outcome"].get("seconds")
        training = float(seconds or 0.0)
        outside = step["wall"] - training
        rate = mfu = None
        if label in ("teacher-fp32", "teacher-bf16", "kd-bf16") and training > 0:
            rate = n_train / training
            model = "teacher" if label.startswith("teacher") else "student"
            mfu = 6 * sizes[model] * length * rate / peaks["bf16" if label.endswith("bf16") else "fp32"]
            rates[label] = rate
        print(f"| {label} | {step['wall']:.1f} | {training:.1f} | {outside:.1f} | "
              f"{'-' if rate is None else f'{rate:.0f}'} | "
              f"{'-' if math.isnan(step['peak_gb']) else format(step['peak_gb'], '.2f')} | "
              f"{'-' if mfu is None else f'{mfu:.1%}'} |")
    print()
    if "teacher-fp32" in rates and "teacher-bf16" in rates:
        speedup = rates["teacher-bf16"] / rates["teacher-fp32"]
        print(f"bf16 / fp32 teacher samples/s: {speedup:.2f}x (goal >= {GOALS['bf16 / fp32']}x: "
              f"{'met' if speedup >= GOALS['bf16 / fp32'] else 'missed'})")
        bf16 = rates["teacher-bf16"]
        print(f"bf16 teacher samples/s: {bf16:.0f} (goal >= {GOALS['bf16 samples/s']:.0f}: "
              f"{'met' if bf16 >= GOALS['bf16 samples/s'] else 'missed'})")
    done = [s for s in steps if not s.get("failed")]
    if done:
        worst = max(done, key=lambda s: s["wall"] - float(s["outcome"].get("seconds") or 0.0))
        outside = worst["wall"] - float(worst["outcome"].get("seconds") or 0.0)
        goal = GOALS["outside training s"]
        print(f"most seconds outside a command's work: {outside:.1f} ({worst['label']}; goal <= {goal:.0f} s: "
              f"{'met' if outside <= goal else 'missed'})")
    if any(s.get("failed") for s in steps):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
