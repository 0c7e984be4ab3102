"""`sprkd report`: one self-contained HTML page of a comparison (tables, and plots embedded as PNG), for a
dataset and its arms or for a list of runs. It reads the store only; it trains and measures nothing."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass

from ..errors import UserError
from ..store import Store
from .figures import curve_axes, subplots

SECTIONS = ("comparison", "statistics", "curves", "hessian", "events", "tuning", "provenance")
CLAIMS = ("auc_val_acc", "hessian.top1", "hessian.trace")  # stats metrics shown (hessian.*: where reports are stored)
SPRKD_EVENTS = ("saddle_check", "saddle_stored", "asr_built", "nhe_kept", "nhe_reverted", "nhe_halved", "nhe_skipped",
                "pgd_kept", "pgd_reverted", "approach_finished")


@dataclass(frozen=True)
class ReportRequest:
    dataset: str | None = None
    arms: tuple[str, ...] = ()  # empty: every arm of the dataset with finished runs (not the --tune grid arms)
    run_ids: tuple[str, ...] = ()  # instead of dataset and arms: these runs, grouped by arm
    student: str | None = None


def gather(store: Store, request: ReportRequest) -> dict:
    """What the page shows, as plain data: {arm: [runs]} and each section's rows."""
    from .runs import run_arms

    runs_by_arm = _runs_by_arm(store, request)
    if not any(runs_by_arm.values()):
        where = f"dataset {request.dataset}" if request.dataset else "these runs"
        raise UserError(f"no finished runs of {where} in {store.shown_url}; see `sprkd runs list`")
    every_run = list({r.id: r for runs in runs_by_arm.values() for r in runs}.values())
    arms_of = store.arms_of_runs([r.id for r in every_run])
    datasets = sorted({r.dataset for r in every_run})
    students = sorted({r.model for r in every_run if r.kind == "student"})
    hessian = _hessian(store, runs_by_arm)
    claims = CLAIMS if hessian else tuple(c for c in CLAIMS if not c.startswith("hessian."))
    return {"dataset": ", ".join(datasets), "students": students, "runs_by_arm": runs_by_arm,
            "comparison": _comparison(runs_by_arm),
            "statistics": _statistics(store, request, runs_by_arm, datasets, claims),
            "tuning": _tuning(store, runs_by_arm), "hessian": hessian,
            "events": _events(store, runs_by_arm),
            "provenance": [{"run": r, "arms": run_arms(r, arms_of)} for r in every_run]}


def _runs_by_arm(store: Store, request: ReportRequest) -> dict[str, list]:
    """The latest finished run of each (arm, seed) (as stats takes them), or the runs asked for by id."""
    from ..tuning import is_tuning_arm
    from .lifecycle import read_run
    from .runs import run_arms

    if request.run_ids:
        runs = [read_run(store, ref) for ref in request.run_ids]
        arms = store.arms_of_runs([r.id for r in runs])
        out: dict[str, list] = {}
        for run in runs:
            if run.status != "finished":
                raise UserError(f"run {run.id} is {run.status}; a report shows finished runs")
            out.setdefault(run_arms(run, arms)[0], []).append(run)
        return out
    names = request.arms or tuple(a for a in store.arm_names() if not is_tuning_arm(a))
    out = {}
    for arm in names:
        latest: dict[int, object] = {}
        for run in store.list_runs(kind="student", arm=arm, dataset=request.dataset, status="finished",
                                   model=request.student):
            latest.setdefault(run.seed, run)  # newest first
        if latest or request.arms:
            out[arm] = [latest[seed] for seed in sorted(latest)]
    return out


def _comparison(runs_by_arm: dict[str, list]) -> list[dict]:
    from ..stats import summarize

    rows = []
    for arm, runs in runs_by_arm.items():
        values = [r.summary["test_acc"] for r in runs if r.summary.get("test_acc") is not None]
        s = summarize(values) if values else None
        rows.append({"arm": arm, "method": runs[0].method if runs else "–", "n": len(values),
                     "mean": s.mean if s else None, "sd": s.sd if s else None,
                     "ci": (s.ci_low, s.ci_high) if s else (None, None),
                     "epochs": sorted({r.summary.get("epochs") for r in runs}),
                     "teachers": sorted({t for r in runs for t in r.teacher_ids}),
                     "seeds": [r.seed for r in runs]})
    return rows


def _statistics(store: Store, request: ReportRequest, runs_by_arm: dict[str, list], datasets: list[str],
                claims: tuple[str, ...]) -> list[dict]:
    """stats' pairwise tests (services.analysis) of test_acc and of `claims`, per metric (a claim some run
    lacks is said, not tested)."""
    from ..stats_request import StatsRequest
    from .analysis import method_stats

    if request.run_ids or len(datasets) != 1 or len(runs_by_arm) < 2:
        return []
    out = []
    for metric in ("test_acc", *claims):
        try:
            stats_request = StatsRequest.parse(datasets[0], methods=",".join(runs_by_arm), metrics=metric,
                                               at="best-val", student=request.student)
            result = method_stats(store, stats_request)
        except UserError as exc:  # a claim some run lacks (no Hessian report): said, not tested
            out.append({"metric": metric, "not_tested": str(exc)})
            continue
        out.extend(t for t in result["tables"] if t["kind"] in ("t", "logrank"))  # one table per metric
    return out


def _tuning(store: Store, runs_by_arm: dict[str, list]) -> list[dict]:
    seen, out = set(), []
    for arm, runs in runs_by_arm.items():
        for run in runs:
            for event in store.events(run.id):
                if event.kind == "tuned" and event.payload.get("arm") == arm and arm not in seen:
                    seen.add(arm)
                    out.append(event.payload)
    return out


def _hessian(store: Store, runs_by_arm: dict[str, list]) -> dict[str, list[dict]]:
    """{arm: the latest after-training report of each run that has one}."""
    out = {}
    for arm, runs in runs_by_arm.items():
        rows = []
        for run in runs:
            reports = [r for r in store.hessian_reports(run.id) if r.step is None]
            if reports:
                rows.append({"run": run, "report": reports[-1]})
        if rows:
            out[arm] = rows
    return out


def _events(store: Store, runs_by_arm: dict[str, list]) -> dict[str, dict[str, dict[int, float]]]:
    """{arm: {event kind: {epoch: count per run}}} of sprkd's saddle, NHE and PGD events, and as
    "teacher ID" the saddle checks of each teacher of an sprkd arm."""
    from .lifecycle import read_run

    teachers = {t for runs in runs_by_arm.values() for r in runs if r.method == "sprkd" for t in r.teacher_ids}
    groups = {**runs_by_arm, **{f"teacher {t}": [read_run(store, t)] for t in sorted(teachers)}}
    out = {}
    for arm, runs in groups.items():
        counts: dict[str, dict[int, float]] = {}
        for run in runs:
            for event in store.events(run.id):
                if event.kind in SPRKD_EVENTS and event.epoch is not None:
                    per_epoch = counts.setdefault(event.kind, {})
                    per_epoch[event.epoch] = per_epoch.get(event.epoch, 0) + 1 / len(runs)
        if counts:
            out[arm] = counts
    return out


# -- plots ----------------------------------------------------------------------------------------------

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def curves_png(store: Store, runs_by_arm: dict[str, list], title: str) -> str | None:
    """Validation accuracy and loss per epoch, mean and a band of ± one sample sd across the arm's runs."""
    if not any(runs_by_arm.values()):
        return None
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    curve_axes(store, {arm: [r.id for r in runs] for arm, runs in runs_by_arm.items()}, axes)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def density_png(hessian: dict[str, list[dict]]) -> str | None:
    import numpy as np

    from ..hessian import DensityEstimate, smooth_density

    with_density = {arm: [row for row in rows if row["report"].result.get("density_nodes")]
                    for arm, rows in hessian.items()}
    if not any(with_density.values()):
        return None
    fig, ax = subplots(figsize=(8, 4.2))
    for index, (arm, rows) in enumerate(with_density.items()):
        for k, row in enumerate(rows):
            result = row["report"].result
            estimate = DensityEstimate(nodes=np.asarray(result["density_nodes"]),
                                       weights=np.asarray(result["density_weights"]), dim=result["dim"],
                                       n_hvp=result["density_n_hvp"], seed=result["seed"], seconds=0.0)
            grid, density = smooth_density(estimate)
            ax.semilogy(grid, np.maximum(density, 1e-12), color=f"C{index}", alpha=0.8,
                        label=f"{arm} ({len(rows)} runs)" if k == 0 else None)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.set_title("Hessian eigenvalue density per run, coloured by arm")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def events_png(events: dict[str, dict[str, dict[int, float]]]) -> str | None:
    from matplotlib.ticker import MaxNLocator

    if not events:
        return None
    fig, axes = subplots(1, len(events), figsize=(5.5 * len(events), 3.8))
    axes = [axes] if len(events) == 1 else list(axes)
    for ax, (arm, counts) in zip(axes, events.items()):
        for kind, per_epoch in sorted(counts.items()):
            epochs = sorted(per_epoch)
            ax.plot(epochs, [per_epoch[e] for e in epochs], marker="o", markersize=3, label=kind)
        ax.set_title(f"{arm}: events per epoch" + ("" if arm.startswith("teacher ") else " (mean per run)"))
        ax.set_xlabel("epoch")
        epochs = sorted({e for per_epoch in counts.values() for e in per_epoch})
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        ax.set_ylim(bottom=0)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


# -- the page -------------------------------------------------------------------------------------------

def _f(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _p(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(png: str | None, alt: str) -> str:
    if png is None:
        return f'<p class="none">No {html.escape(alt)} stored for these runs.</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}.none{color:#777;font-style:italic}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
"""


def render(store: Store, data: dict, title: str) -> str:
    """The page: every section of SECTIONS, each an <section id=...>, present even when it has nothing."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">Store {html.escape(store.shown_url)}; student model(s): '
             f'{html.escape(", ".join(data["students"]) or "–")}; made by sprkd report.</p>']
    for section in SECTIONS:
        parts.append(f'<section id="{section}">{SECTION_RENDERERS[section](store, data)}</section>')
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _render_comparison(store, data) -> str:
    rows = [[html.escape(r["arm"]), html.escape(r["method"]), str(r["n"]), _f(r["mean"]), _f(r["sd"]),
             f"[{_f(r['ci'][0])}, {_f(r['ci'][1])}]", html.escape(", ".join(map(str, r["epochs"]))),
             html.escape(", ".join(r["teachers"]) or "–"), html.escape(", ".join(map(str, r["seeds"])))]
            for r in data["comparison"]]
    return ("<h2>Comparison</h2><p class=\"note\">Test accuracy at each run's best-validation epoch; mean, sample sd "
            "and the 95% t confidence interval of the mean across seeds (the latest finished run of each arm and "
            "seed).</p>"
            + _table(["arm", "method", "n", "mean", "sd", "95% CI", "epochs", "teachers", "seeds"], rows, "comparison"))


def _render_statistics(store, data) -> str:
    out = ["<h2>Statistics</h2>",
           "<p class=\"note\">Tests named per column: Welch's t-test (unequal variances) between arms, and the paired "
           "t-test on the seeds both arms have; p-values Holm-adjusted across the pairs of each metric; Cohen's d "
           "(pooled sd) and "
           "d<sub>z</sub> (paired); 95% confidence interval of the difference a − b (Welch). Computed by "
           "<code>sprkd stats</code>.</p>"]
    if not data["statistics"]:
        out.append('<p class="none">No tests: they need two arms or more of one dataset.</p>')
    for block in data["statistics"]:
        metric = html.escape(block["metric"])
        if "not_tested" in block:
            out.append(f'<h3>{metric}</h3><p class="none">Not tested: {html.escape(block["not_tested"])}</p>')
            continue
        if block["kind"] == "logrank":
            out.append(_survival_block(block))
            continue
        arms = [[html.escape(a["method"]), str(a["n"]), _f(a["mean"]), _f(a["sd"]),
                 html.escape(", ".join(map(str, a["seeds"])))] for a in block["arms"]]
        pairs = [[f"{html.escape(p['a'])} − {html.escape(p['b'])}", _f(p.get("diff")),
                  f"[{_f(p.get('ci_low'))}, {_f(p.get('ci_high'))}]", _p(p.get("p_welch")), _p(p.get("p_adj")),
                  f"{_p(p.get('p_paired'))} ({p.get('n_pairs', '–')})", _p(p.get("p_adj_paired")),
                  _f(p.get("cohens_d"), 2), _f(p.get("cohens_dz"), 2)] for p in block["pairs"]]
        warnings = dict.fromkeys(w for p in block["pairs"] for w in p.get("warnings", []))
        whole = block["metric"] in ("auc_val_acc",)
        out.append(f"<h3>{metric} ({'of the whole run' if whole else 'at the best-validation epoch'})</h3>"
                   + _table(["arm", "n", "mean", "sd", "seeds"], arms, "stats-arms")
                   + _table(["a − b", "diff", "95% CI (Welch)", "p Welch t-test", "p Holm (Welch)",
                             "p paired t-test (pairs)", "p Holm (paired)", "Cohen's d", "d_z"], pairs, "stats-pairs")
                   + "".join(f'<p class="note">warning: {html.escape(w)}</p>' for w in warnings))
    return "".join(out)


def _survival_block(block: dict) -> str:
    """epochs_to:X as censored time-to-event data: Kaplan–Meier medians and the log-rank tests."""
    def epochs(value):
        return "not reached" if value is None else f"{value:g}"

    arms = [[html.escape(a["method"]), str(a["n"]), str(a["reached"]), str(a["censored"]), epochs(a["median"]),
             html.escape(", ".join(map(str, a["seeds"])))] for a in block["arms"]]
    pairs = [[f"{html.escape(p['a'])} − {html.escape(p['b'])}",
        f"{p['reached_a']}/{p['n_a']}, {p['reached_b']}/{p['n_b']}",
              _f(p.get("logrank_chi2"), 3), _p(p.get("p_logrank")), _p(p.get("p_adj"))] for p in block["pairs"]]
    return (f"<h3>{html.escape(block['metric'])} (censored time-to-event: runs that never reach the threshold count "
            "as censored at their last epoch)</h3>"
            + _table(["arm", "runs", "reached", "censored", "median epoch (Kaplan–Meier)", "seeds"], arms, "stats-arms")
            + _table(["a − b", "reached a/b", "log-rank χ²", "p (permutation)", "p adjusted"], pairs, "stats-pairs"))


def _render_curves(store, data) -> str:
    png = curves_png(store, data["runs_by_arm"], f"{data['dataset']}: students {', '.join(data['students'])}")
    return ("<h2>Learning curves</h2><p class=\"note\">Validation accuracy and loss per epoch: the mean across each "
            "arm's runs, with a band of ± one sample sd.</p>" + _img(png, "learning curves"))


def _render_hessian(store, data) -> str:
    out = ["<h2>Hessian</h2>"]
    if not data["hessian"]:
        return out[0] + ('<p class="none">No Hessian reports stored for these runs (compare --hessian, or '
                         'sprkd hessian-report RUN --trace --density).</p>')
    rows = []
    for arm, reports in data["hessian"].items():
        for row in reports:
            report, result = row["report"], row["report"].result
            rows.append([html.escape(arm), row["run"].id, str(row["run"].seed),
                         html.escape(report.config.get("weights", "–")),
                         f"{report.config.get('probe_batches', '–')} x {report.config.get('probe_size', '–')}",
                         html.escape(", ".join(f"{v:.4g}" for v in result["top_eigenvalues"])),
                         html.escape(", ".join(f"{v:.4g}" for v in result["bottom_eigenvalues"])),
                         "–" if result.get("trace") is None else f"{result['trace']:.4g} ± {result['trace_se']:.2g}"])
    out.append("<p class=\"note\">The latest after-training report of each run, on the run's own probe set.</p>"
               + _table(["arm", "run", "seed", "weights", "probe set (batches x size)", "top eigenvalues",
                         "bottom eigenvalues", "trace (± se)"], rows, "hessian"))
    out.append(_img(density_png(data["hessian"]), "eigenvalue densities"))
    return "".join(out)


def _render_events(store, data) -> str:
    intro = ("<h2>sprkd events</h2><p class=\"note\">Saddle checks and stored saddles, the ASR, and the NHE and PGD "
             "steps kept or reverted, per epoch (mean count per run of the arm).</p>")
    if not data["events"]:
        return intro + '<p class="none">No sprkd events among these runs.</p>'
    totals = [[html.escape(arm), html.escape(kind), f"{sum(per_epoch.values()):.1f}"]
              for arm, counts in data["events"].items() for kind, per_epoch in sorted(counts.items())]
    return intro + _img(events_png(data["events"]), "sprkd events") + _table(["arm", "event", "per run"], totals,
                                                                              "events")


def _render_tuning(store, data) -> str:
    intro = "<h2>Tuning</h2>"
    if not data["tuning"]:
        return intro + '<p class="none">No arm of these runs was tuned (compare --tune).</p>'
    out = [intro, "<p class=\"note\">compare --tune: each grid point run on the tuning seeds; the point with the best "
                  "mean validation accuracy (ties: lowest validation loss) was chosen; test data never looked at.</p>"]
    for t in data["tuning"]:
        chosen = t.get("chosen", {})
        rows = [[html.escape(", ".join(f"{k}={v}" for k, v in s["values"].items())), _f(s["val_acc"]),
                 _f(s["val_loss"]), "chosen" if s["values"] == chosen else ""] for s in t.get("scores", [])]
        rows += [[html.escape(", ".join(f"{k}={v}" for k, v in p.items())), "–", "–", "failed"]
                 for p in t.get("failed", [])]
        out.append(f"<h3>arm {html.escape(t['arm'])}: chosen "
                   f"{html.escape(', '.join(f'{k}={v}' for k, v in chosen.items()))}"
                   f" (seeds {html.escape(', '.join(map(str, t.get('seeds', []))))})</h3>"
                   + _table(["grid point", "mean val acc", "mean val loss", ""], rows, "tuning"))
    return "".join(out)


def _render_provenance(store, data) -> str:
    rows = []
    for item in sorted(data["provenance"], key=lambda i: (i["arms"], i["run"].seed)):
        run = item["run"]
        versions = run.versions or {}
        rows.append([run.id, html.escape(", ".join(item["arms"])), str(run.seed),
                     html.escape((run.git_commit or "–")[:12] + (" (dirty)" if run.git_dirty else "")),
                     html.escape(run.device or "–"), html.escape(run.host or "–"),
                     html.escape(", ".join(f"{k} {v}" for k, v in sorted(versions.items()))),
                     html.escape(run.created_at.strftime("%Y-%m-%d %H:%M:%S") if run.created_at else "–")])
    return ("<h2>Provenance</h2><p class=\"note\">Every run shown: its code commit, device, host and library "
            "versions.</p>" + _table(["run", "arms", "seed", "commit", "device", "host", "versions", "created"], rows,
                                     "provenance"))


SECTION_RENDERERS = {"comparison": _render_comparison, "statistics": _render_statistics, "curves": _render_curves,
                     "hessian": _render_hessian, "events": _render_events, "tuning": _render_tuning,
                     "provenance": _render_provenance}


def write_report(store: Store, request: ReportRequest, output: str | None = None) -> dict:
    """Gather, render and write the page (default: reports/ in the artifact root, named for the dataset, its
    arms and the time); returns {"path", "arms", "runs"}."""
    from ..store import utcnow
    from ..store.artifacts import local_file_for

    data = gather(store, request)
    arms = list(data["runs_by_arm"])
    title = f"sprkd report: {data['dataset']}, arms {', '.join(arms)}"
    page = render(store, data, title)
    if output is None:
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{data['dataset']}-{'-'.join(arms)}")[:120]
        output = store.artifact_path("reports", f"{slug}-{utcnow():%Y%m%d-%H%M%S}.html")
    with local_file_for(output, ".html") as local:
        with open(local, "w", encoding="utf-8") as handle:
            handle.write(page)
    return {"path": str(output), "arms": arms, "runs": len(data["provenance"])}
