"""Which epoch a run reports: model selection on the validation split only (never on test).

A tiny validation split saturates: on digits 177/179 is reached within 10-30 epochs and then held, so
"the epoch of best validation accuracy" alone picks the first epoch that reaches it. Ties in validation
accuracy are broken by the lowest validation loss, then by the earliest epoch. The training loop, the
stored summary (`best_epoch`, with `selection` naming this rule), `stats --at best-val`, the best-val
checkpoint and everything measured on it follow this one rule."""

from __future__ import annotations

RULE = "max val_acc; ties: min val_loss, then earliest"


def better(acc: float, loss: float, best_acc: float, best_loss: float) -> bool:
    """Whether an epoch with validation accuracy `acc` and loss `loss` beats the best so far."""
    return acc > best_acc or (acc == best_acc and loss < best_loss)


def best_epoch(curve: dict[int, tuple[float, float]]) -> int:
    """The selected epoch of a stored curve {epoch: (val_acc, val_loss)} (epochs in any order)."""
    if not curve:
        raise ValueError("an empty curve has no best epoch")
    chosen = None
    for epoch in sorted(curve):
        acc, loss = curve[epoch]
        if chosen is None or better(acc, loss, *curve[chosen]):
            chosen = epoch
    return chosen


def plateau_reached(best: int, epochs: int, stopped_early: bool, window: int) -> bool:
    """A run has reached its plateau when early stopping ended it, or when its selected epoch came at least
    `window` epochs (its --patience, else a quarter of its epochs) before its last one."""
    return stopped_early or epochs - best >= max(1, window)


def plateau_window(patience: int, epochs: int) -> int:
    return patience if patience else max(1, epochs // 4)
