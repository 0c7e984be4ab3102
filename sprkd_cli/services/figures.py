"""Figures of stored runs, drawn with matplotlib (Agg, no display): compare's learning curves and
Kaplan–Meier curves as PNG artifacts, and the validation curves that `sprkd report` embeds."""

from __future__ import annotations

from pathlib import Path

from ..store import Store


def subplots(*grid, **options):
    """matplotlib's plt.subplots, on the Agg backend (files only: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*grid, **options)


def save_png(fig, out: "Path | str") -> "Path | str":
    """`fig` as a PNG at `out` (a remote `out`, see store.artifacts: saved, then uploaded), then closed."""
    import matplotlib.pyplot as plt

    from ..store.artifacts import local_file_for

    with local_file_for(out, ".png") as local:
        fig.savefig(local, dpi=120, format="png")
    plt.close(fig)
    return out


def learning_curves(store: Store, runs_by_arm: dict[str, list[str]], dataset: str,
                    student: str | None = None) -> "Path | str | None":
    """Validation accuracy and loss per epoch, mean ± sample sd over seeds, one line per arm, as a PNG
    named for the dataset, the arms and the runs (another comparison of the same arms gets its own file)."""
    import hashlib

    all_ids = [rid for ids in runs_by_arm.values() for rid in ids]
    if not all_ids:
        return None
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    curve_axes(store, runs_by_arm, axes)
    fig.suptitle(f"{dataset}: {student + ' students, ' if student else ''}mean ± sd over seeds")
    fig.tight_layout()
    runs = hashlib.sha256(",".join(sorted(all_ids)).encode()).hexdigest()[:8]
    return save_png(fig, store.artifact_path("compare", f"{dataset}-{'-'.join(runs_by_arm)}-{runs}.png"))


def kaplan_meier_plot(store: Store, curves: dict[str, tuple], dataset: str, threshold: float) -> "Path | str | None":
    """Per arm, the Kaplan–Meier curve of the share of runs not yet at validation accuracy `threshold`, by epoch
    (a step function; censored runs end their arm's curve at their last epoch), as a PNG. `curves`: per arm,
    the "curve" of compare.summary.epochs_to_summary."""
    if not any(n for n, *_ in curves.values()):
        return None
    fig, ax = subplots(figsize=(7, 4.5))
    for arm, (n, times, survival, last_censored) in curves.items():
        if not n:
            continue
        end = max([*times, last_censored])
        xs, ys = [0.0, *times, end], [1.0, *survival, survival[-1] if survival else 1.0]
        ax.step(xs, ys, where="post", label=f"{arm} (n={n})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"share of runs not yet at val acc {threshold:g}")
    ax.set_title(f"{dataset}: epochs to validation accuracy {threshold:g} (Kaplan–Meier)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, store.artifact_path("compare", f"{dataset}-{'-'.join(curves)}-epochs-to-{threshold:g}.png"))


def curve_axes(store: Store, runs_by_arm: dict[str, list[str]], axes) -> None:
    """On two matplotlib axes: validation accuracy and validation loss per epoch, each arm's mean across its
    runs with a band of ± one sample sd (none where one run reaches that epoch), integer epoch ticks."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    by_run = {rid: arm for arm, ids in runs_by_arm.items() for rid in ids}
    series: dict[tuple[str, str], dict[int, list[float]]] = {}
    for m in store.metrics(list(by_run)):
        if m.split == "val" and m.name in ("acc", "loss"):
            series.setdefault((by_run[m.run_id], m.name), {}).setdefault(m.epoch, []).append(m.value)
    for ax, name, label in zip(axes, ("acc", "loss"), ("validation accuracy", "validation loss")):
        for index, arm in enumerate(runs_by_arm):
            per_epoch = series.get((arm, name))
            if not per_epoch:
                continue
            epochs = sorted(per_epoch)
            mean = np.array([np.mean(per_epoch[e]) for e in epochs])
            sd = np.array([np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0.0 for e in epochs])
            ax.plot(epochs, mean, color=f"C{index}", label=f"{arm} (n={len(runs_by_arm[arm])})")
            ax.fill_between(epochs, mean - sd, mean + sd, color=f"C{index}", alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
