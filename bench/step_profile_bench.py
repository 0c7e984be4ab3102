"""What one training step asks of the device, counted in a torch.profiler CPU profile of sprkd's loop.

For sgd and kd on digits (mlp-small student, mlp:width=128,depth=1 teacher) and on a tiny BERT
(2 layers, hidden 32, generated SST-2-shaped sentences; in fp32 and under --precision bf16, whose autocast
adds a cast of each weight and activation it meets, on a GPU a kernel each), fit() trains 2 epochs under
the profiler (the first epoch's steps are excluded: warm-up), and the operator events of the second epoch's steps are
counted per step:

  syncs    aten::_local_scalar_dense outside the optimiser: a tensor read back into Python (.item(),
           float(), .tolist()); on a GPU each waits for every queued kernel
  optimizer reads  the same inside Optimizer.step: Adam's per-parameter step counts, CPU tensors
           unless the optimiser is fused, so no device sync on a GPU either way
  to       aten::to / aten::_to_copy calls outside the optimiser: on a GPU a batch's host-to-device copy
           is one (on the CPU .to("cpu") returns the tensor itself, so the call is counted, not a copy)
  copies   aten::copy_ events outside the optimiser
  ops      every aten:: operator event (nested ones included; on a GPU each leaf is a kernel launch), and
           those inside the optimiser's step (the CPU's single-tensor Adam; on a GPU sprkd's is fused)

Counted from the profiler's events between the epoch's first and last step (its evaluation and epoch end
aside) and divided by its steps. Run against two checkouts to compare them.

Run: python bench/step_profile_bench.py
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sprkd_cli.config import TrainConfig  # noqa: E402
from sprkd_cli.data import load_dataset  # noqa: E402
from sprkd_cli.engine import fit  # noqa: E402
from sprkd_cli.engine.seeding import seed_everything  # noqa: E402
from sprkd_cli.methods.registry import prepare_detached  # noqa: E402
from sprkd_cli.models import build_model  # noqa: E402

KINDS = ("syncs", "to", "copies", "ops")


def _in_optimizer(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer.step"):
            return True
        parent = parent.cpu_parent
    return False


def count(events) -> dict[str, int]:
    names = [e.name for e in events]
    reads = [e for e in events if e.name == "aten::_local_scalar_dense"]
    optimizer = sum(_in_optimizer(e) for e in reads)
    outside = [e.name for e in events if not _in_optimizer(e)]
    return {"syncs": len(reads) - optimizer, "optimizer reads": optimizer,
            "to": sum(n in ("aten::to", "aten::_to_copy") for n in outside),
            "copies": sum(n == "aten::copy_" for n in outside),
            "ops": sum(n.startswith("aten::") for n in names),
            "optimizer ops": sum(n.startswith("aten::") for n in names) - sum(n.startswith("aten::") for n in outside)}


def profile_steps(model, method, data, cfg) -> dict[str, float]:
    """Per-step counts of the second epoch's training steps."""
    def on_step(step, epoch):  # a marker event at each step's end
        with torch.autograd.profiler.record_function(f"sprkd_step_end:{epoch}:{step}"):
            pass

    # the marker hook does not look at the model (a checkout whose fit() does not ask is profiled as it is)
    extra = {"hooks_read_model": False} if "hooks_read_model" in inspect.signature(fit).parameters else {}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fit(model, method, data, cfg, on_step=on_step, **extra)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    ends = {e.name: e.time_range.start for e in events if e.name.startswith("sprkd_step_end:")}
    epoch2 = sorted(t for name, t in ends.items() if name.split(":")[1] == "2")
    last_of_1 = max(t for name, t in ends.items() if name.split(":")[1] == "1")
    window = [e for e in events if last_of_1 < e.time_range.start <= epoch2[-1] and not e.name.startswith("sprkd_")]
    # the window holds epoch 1's evaluation too: drop events before epoch 2's first training op (its permutation)
    starts = [e.time_range.start for e in window if e.name == "aten::randperm"]
    if starts:
        window = [e for e in window if e.time_range.start >= starts[-1]]
    steps = len(epoch2)
    return {k: v / steps for k, v in count(window).items()} | {"steps": steps}


def digits_case(method_name: str, tmp: Path):
    data = load_dataset("digits", 0)
    cfg = TrainConfig(kind="student", method=method_name, dataset="digits", model="mlp-small", epochs=2)
    teacher = None
    if method_name == "kd":
        seed_everything(1)
        teacher = build_model("mlp:width=128,depth=1", data.input_shape, data.n_classes).eval()
    return data, cfg, "mlp-small", teacher


def text_case(method_name: str, tmp: Path):
    from textdata import sst2_dir, tiny_model

    folder = tiny_model(tmp / f"bert-{method_name}", hidden=32, layers=2)
    spec = f"hf:{folder}"
    data = load_dataset("sst2", 0, data_dir=str(sst2_dir(tmp / f"glue-{method_name}", n_train=320)), model=spec)
    cfg = TrainConfig(kind="student", method=method_name, dataset="sst2", model=spec, epochs=2, batch_size=32)
    teacher = None
    if method_name == "kd":
        seed_everything(1)
        teacher = build_model(spec, data.input_shape, data.n_classes).eval()
    return data, cfg, spec, teacher


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, case, precision in (("digits mlp-small", digits_case, "fp32"),
                                       ("tiny BERT (2 x 32)", text_case, "fp32"),
                                       ("tiny BERT (2 x 32), bf16", text_case, "bf16")):
            for method_name in ("sgd", "kd"):
                data, cfg, spec, teacher = case(method_name, Path(tmp) / precision)
                cfg = dataclasses.replace(cfg, precision=precision)
                seed_everything(0)
                model = build_model(spec, data.input_shape, data.n_classes)
                method = prepare_detached(method_name, data, teachers=[teacher] if method_name == "kd" else [],
                                          config=cfg)
                counts = profile_steps(model, method, data, cfg)
                rows.append((label, method_name, counts))
    print("| model | method | steps | syncs/step | optimizer reads/step | .to calls/step | copy_/step | aten ops/step "
          "| of which optimizer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, method_name, c in rows:
        print(f"| {label} | {method_name} | {c['steps']} | {c['syncs']:.2f} | {c['optimizer reads']:.2f} | "
              f"{c['to']:.2f} | {c['copies']:.2f} | {c['ops']:.1f} | {c['optimizer ops']:.1f} |")


if __name__ == "__main__":
    main()
