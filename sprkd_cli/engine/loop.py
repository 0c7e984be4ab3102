"""The training loop: seeded data order by index slicing, per-epoch evaluation, best-val tracking."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import selection
from ..config import TrainConfig
from ..data import Splits
from ..errors import Diverged
from ..methods.contract import Method
from ..models.modes import train_mode
from .augment import CropFlip
from .optim import make_optimizer, make_schedule
from .precision import autocast, grad_scaler
from .seeding import rng_state, set_rng_state

EVAL_CHUNK = 1024  # examples per forward pass in evaluation: bounds activation memory of CIFAR ResNets


@dataclass
class EpochRecord:
    epoch: int
    step: int
    metrics: dict[tuple[str, str], float]  # (split, name) -> value
    seconds: float


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict | None = None
    best_test_predictions: torch.Tensor | None = None
    stopped_early: bool = False  # --patience ended the run before cfg.epochs

    def summary(self) -> dict:
        """The run's headline numbers; test_acc is taken at the epoch of best validation accuracy."""
        if not self.history:
            return {}
        best = self.history[self.best_epoch - 1].metrics
        last = self.history[-1].metrics
        return {
            "best_epoch": self.best_epoch,
            "best_val_acc": best[("val", "acc")],
            "best_val_loss": best[("val", "loss")],
            "selection": selection.RULE,
            "stopped_early": self.stopped_early,
            "test_acc": best[("test", "acc")],
            "final_val_acc": last[("val", "acc")],
            "final_test_acc": last[("test", "acc")],
            "final_train_loss": last[("train", "loss")],
            "epochs": len(self.history),
            "steps": self.history[-1].step,
            "seconds": sum(r.seconds for r in self.history),
        }


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             precision: str = "fp32") -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and predictions (on the CPU), in eval mode on the model's device, the
    forward passes in `precision` (--precision) and the loss of their logits in float32; the model's mode
    is restored."""
    device = next(model.parameters()).device
    with train_mode(model, False), autocast(precision, device):
        logits = torch.cat([model(x[i:i + EVAL_CHUNK].to(device)).float()
                            for i in range(0, len(x), EVAL_CHUNK)]).cpu()  # one copy back, not one per chunk
    predictions = logits.argmax(dim=1)
    loss = F.cross_entropy(logits, y).item()
    return loss, (predictions == y).float().mean().item(), predictions


def fit(model: torch.nn.Module, method: Method, data: Splits, cfg: TrainConfig,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_step: Callable[[int, int], None] | None = None, *,
        checkpoint: Callable[[int, Callable[[], dict]], None] | None = None,
        resume: dict | None = None, hooks_read_model: bool = True) -> FitResult:
    """Train `model` with `method` for cfg.epochs (or until cfg.patience epochs have passed without a better
    validation epoch, see selection.better); raises Diverged on a non-finite loss.

    `on_step(step, epoch)` runs after every optimiser step (e.g. Hessian probes during training). The
    method's `replace_step` may take a step's place (sprkd's approach) and its `after_step` runs after each
    base step; `method.setup` is the caller's (services.training.prepare).
    The model trains where it is (services.training.prepare puts it on the run's device); the data stay
    where they are and each batch is moved there (and, with cfg.augment, randomly cropped and flipped
    from its own seeded generator).
    With cfg.precision bf16 or fp16, each step's method.loss (the forward passes and the loss) and the
    evaluation run under autocast (engine.precision); fp16 scales the loss for backward and unscales the
    gradients before the optimiser step, so after_step and on_step see the true gradient. on_step hooks,
    replace_step, after_step and start_epoch run outside autocast.

    After each epoch's on_epoch, `checkpoint(epoch, capture)` may call `capture()` for the loop's whole
    state (model, optimiser, fp16's loss scaler, schedule, data order and augmentation generators, method
    state, global RNGs, best-so-far and history: see engine.state for writing it). `resume`, such a state,
    continues after its epoch, and the run ends with exactly the numbers of one never stopped
    (tests/test_resume.py)."""
    device = next(model.parameters()).device
    augment = CropFlip(cfg.seed) if cfg.augment else None
    x, y = on_device(data.x_train, device), on_device(data.y_train, device)
    n = len(y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum, betas=cfg.betas, fused=device.type == "cuda")
    # The loss is read back (a host-device sync on a GPU) once an epoch, unless something looks at the model
    # after each step (on_step hooks that read it, a method's replace_step or after_step): then at every step,
    # so that a non-finite loss stops the run before they see its parameters.
    every_step = hooks_read_model and on_step is not None or _overrides(method, "replace_step", "after_step")
    schedule = make_schedule(cfg.schedule, optimizer, cfg.epochs * steps_per_epoch)
    scaler = grad_scaler(cfg.precision, device)
    order = torch.Generator().manual_seed(cfg.seed)
    result = FitResult()
    best_val, best_loss = -1.0, math.inf
    step = 0
    first_epoch = 1
    threads = torch.get_num_threads()  # as chosen for the run (engine.threads)
    if resume is not None:
        first_epoch, step = _restore(resume, model, optimizer, scaler, schedule, order, augment, method, result)
        best = result.history[result.best_epoch - 1].metrics
        best_val, best_loss = best[("val", "acc")], best[("val", "loss")]
    for epoch in range(first_epoch, cfg.epochs + 1):
        if cfg.patience and epoch - 1 - result.best_epoch >= cfg.patience:  # checked here, so a resume stops too
            result.stopped_early = True
            break
        started = time.perf_counter()
        method.start_epoch(model, epoch, step)
        if torch.get_num_threads() != threads:  # sage's round (numba, UMAP) can change it: a run trains on one count
            torch.set_num_threads(threads)
        model.train()
        permutation = torch.randperm(n, generator=order)
        on_x = on_device(permutation, x.device)  # batches are gathered where the data are (a GPU: no copy per step)
        total = 0.0
        losses: list[tuple[torch.Tensor | float, int, int]] = []  # (loss, examples, step), read at the epoch's end
        for start in range(0, n, cfg.batch_size):
            index = permutation[start:start + cfg.batch_size]
            where = on_x[start:start + cfg.batch_size]
            xb, yb = x[where].to(device), y[where].to(device)
            if augment is not None:
                xb = augment(xb)
            step += 1
            if method.replace_step(model, step, epoch):
                # the method moved the parameters itself: no base step, but the schedule follows the step count
                with torch.no_grad(), autocast(cfg.precision, device):
                    value = method.loss(model, xb, yb, index).item()
                if not math.isfinite(value):
                    raise Diverged(step, epoch, value)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                    schedule.step()
            else:
                with autocast(cfg.precision, device):
                    loss = method.loss(model, xb, yb, index)
                if every_step:
                    value = loss.item()
                    if not math.isfinite(value):
                        raise Diverged(step, epoch, value)
                else:
                    value = loss.detach()
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                else:
                    _scaled_step(scaler, loss, optimizer, schedule)
                method.after_step(model, step, epoch)
            losses.append((value, len(index), step))
            if on_step is not None:
                on_step(step, epoch)
        values = _read_back([v for v, _, _ in losses])
        for value, (_, size, at) in zip(values, losses):  # in step order: the first non-finite loss stops the run
            if not math.isfinite(value):
                raise Diverged(at, epoch, value)
            total += value * size
        metrics = {("train", "loss"): total / n}
        metrics.update({("train", name): value for name, value in method.epoch_metrics().items()})
        for split in ("val", "test"):
            loss_value, acc, predictions = evaluate(model, *data.split(split), cfg.precision)
            metrics[(split, "loss")] = loss_value
            metrics[(split, "acc")] = acc
        test_predictions = predictions
        if not math.isfinite(metrics[("val", "loss")]):
            raise Diverged(step, epoch, metrics[("val", "loss")])
        record = EpochRecord(epoch, step, metrics, time.perf_counter() - started)
        result.history.append(record)
        if selection.better(metrics[("val", "acc")], metrics[("val", "loss")], best_val, best_loss):
            best_val, best_loss = metrics[("val", "acc")], metrics[("val", "loss")]
            result.best_epoch = epoch
            result.best_state = copy.deepcopy(model.state_dict())
            result.best_test_predictions = test_predictions
        if on_epoch is not None:
            on_epoch(record)
        if checkpoint is not None:
            checkpoint(epoch, lambda: _capture(epoch, step, model, optimizer, scaler, schedule, order, augment,
                                               method, result))
    return result


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device` (the training data, once per run, rather than every batch every step), when that is a
    GPU with room for it (under a quarter of its free memory); else `t` where it is."""
    if t.device == device or device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    return t.to(device) if t.numel() * t.element_size() < free // 4 else t


def _read_back(values: list) -> list[float]:
    """The losses of an epoch's steps as Python floats, each exactly as .item() gives it, in one read."""
    pending = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
    if not pending:
        return list(values)
    read = torch.stack([values[i].float() for i in pending]).tolist()
    out = list(values)
    for i, v in zip(pending, read):
        out[i] = v
    return out


def _overrides(method: Method, *hooks: str) -> bool:
    return any(getattr(type(method), hook) is not getattr(Method, hook) for hook in hooks)


def _scaled_step(scaler, loss, optimizer, schedule) -> None:
    """fp16's step: backward of the scaled loss, the gradients unscaled in place (so whatever reads .grad
    after sees the true gradient), the optimiser step skipped when they are not finite (the scale is then
    lowered); the schedule follows the step count either way."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        schedule.step()


def _capture(epoch, step, model, optimizer, scaler, schedule, order, augment, method, result) -> dict:
    return {
        "epoch": epoch, "step": step,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "order": order.get_state(), "augment": None if augment is None else augment.generator.get_state(),
        "method": method.state_dict(), "rng": rng_state(),
        "best_epoch": result.best_epoch, "best_state": result.best_state,
        "best_test_predictions": result.best_test_predictions,
        "history": [(r.epoch, r.step, r.metrics, r.seconds) for r in result.history],
    }


def _restore(state, model, optimizer, scaler, schedule, order, augment, method, result) -> tuple[int, int]:
    """Load a _capture()d state (taken after an epoch, so its history is not empty); returns the next
    epoch and the step count."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    schedule.load_state_dict(state["schedule"])
    order.set_state(state["order"])
    if augment is not None:
        augment.generator.set_state(state["augment"])
    method.load_state_dict(state["method"])
    set_rng_state(state["rng"])
    result.best_epoch = state["best_epoch"]
    result.best_state = state["best_state"]
    result.best_test_predictions = state["best_test_predictions"]
    result.history = [EpochRecord(*row) for row in state["history"]]
    return state["epoch"] + 1, state["step"]
