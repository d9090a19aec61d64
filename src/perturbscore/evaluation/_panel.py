"""The panel table: the default against the best baseline on every screen of the simulated panel.

``panel`` (as :func:`perturbscore.evaluation.reproduce_panel` returns and writes to ``panel.json``)::

    {"settings": {"command": str, "seeds": [...], "max_steps": int | None, "sim_seed": int, ...},
     "screens": {name: <reproduce results of that screen, plus "knobs": {...}>}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._cells import DASH, at, fmt, paired_se
from ._removal import render_removal_markdown

#: The panel ``reproduce --panel`` runs by default: what carries the signal varies from screen to screen.
PANEL_SCREENS = (
    "default",
    "features_strong",
    "features_none",
    "shift_strong",
    "genes_15k",
    "shift_none",
    "labels_clean",
)
#: Baselines the cells path is judged against, and the sequence-only path.
CELL_BASELINES = ("empirical", "shrunk", "empirical_bayes")
SEQUENCE_BASELINES = ("empirical_bayes", "train_mean", "ridge", "pcr", "knn")
FEATURE_REGRESSIONS = ("ridge", "pcr", "knn")
SHORT = {
    "empirical": "empirical",
    "shrunk": "shrunk",
    "empirical_bayes": "EB",
    "train_mean": "mean",
    "ridge": "ridge",
    "pcr": "PCR",
    "knn": "k-NN",
}
COVERAGE_KS = (2, 10, 60)
COVERAGE_RANGE = (0.90, 0.97)


def _best(baselines: Mapping[str, Any], names: tuple[str, ...], key: str, k: int | None = None) -> tuple[str, float]:
    vals = {n: at(baselines.get(n), key, k) for n in names if n in baselines}
    vals = {n: v for n, v in vals.items() if not math.isnan(v)}
    if not vals:
        return "", math.nan
    name = min(vals, key=lambda n: vals[n])
    return name, vals[name]


def screen_checks(res: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers and checks of one screen's results (means over training seeds).

    Returns
    -------
    ``{"cells": {k: {...}}, "sequence": {...}, "coverage": {...}, "all_cells": {...}, "stability_10": float,
    "stability_10_eb": float, "checks": {name: bool | None}}`` (``None``: not measured). ``stability_10_eb`` is
    that of empirical Bayes's posterior mix from the same 10 cells: the stability the cells and the features
    allow without a learned statistic.
    """
    model = (res.get("models") or {}).get("perturbscore") or {}
    base = res.get("baselines") or {}
    knobs = res.get("knobs") or {}
    ks = [int(k) for k in res.get("ks") or []]
    cells: dict[int, dict[str, Any]] = {}
    for k in ks:
        name, best = _best(base, CELL_BASELINES, "mae_cells", k)
        ours = at(model, "mae_cells", k)
        cells[k] = {
            "default": ours, "head": at(model, "mae_cells_head", k), "best": best, "best_name": name,
            "se": paired_se(model, base.get(name), "knockout_mae_cells", k),
        }  # fmt: skip
    seq_name, seq_best = _best(base, SEQUENCE_BASELINES, "mae_sequence")
    reg_name, reg_best = _best(base, FEATURE_REGRESSIONS, "mae_sequence")
    sequence: dict[str, Any] = {
        "default": at(model, "mae_sequence"),
        "head": at(model, "mae_sequence_head"),
        "best": seq_best,
        "best_name": seq_name,
        "se": paired_se(model, base.get(seq_name), "knockout_mae_sequence"),
        "best_regression": reg_best,
        "best_regression_name": reg_name,
        "train_mean": at(base.get("train_mean"), "mae_sequence"),
    }
    coverage = {k: at(model, "coverage", k) for k in COVERAGE_KS} | {0: at(model, "coverage_sequence")}
    all_cells = {key: at(model.get("all_cells"), key) for key in ("mae", "mae_tally", "spearman", "spearman_tally")}
    all_cells_coverage = at(model.get("all_cells"), "coverage")
    stab = at(model, "stability", 10)
    stab_eb = at(base.get("empirical_bayes"), "stability", 10)

    def ok(cond: bool, *vals: float) -> bool | None:  # noqa: FBT001
        return None if any(math.isnan(v) for v in vals) else bool(cond)

    shift = float(knobs.get("within_state_shift", 1.0)) > 0
    signal = float(knobs.get("feature_signal", 1.0)) > 0
    checks: dict[str, bool | None] = {
        "cells <= best baseline, every k": ok(
            all(c["default"] <= c["best"] for c in cells.values()),
            *[v for c in cells.values() for v in (c["default"], c["best"])],
        ),  # fmt: skip
        "cells >= 10 % below best, k <= 10": (
            ok(
                all(c["default"] <= 0.9 * c["best"] for k, c in cells.items() if k <= 10),
                *[v for k, c in cells.items() if k <= 10 for v in (c["default"], c["best"])],
            )
            if shift
            else None
        ),
        "sequence": (
            ok(sequence["default"] <= sequence["best_regression"], sequence["default"], sequence["best_regression"])
            if signal
            else ok(sequence["default"] <= 1.02 * sequence["train_mean"], sequence["default"], sequence["train_mean"])
        ),
        "all cells: MAE <= tally, Spearman >= tally": ok(
            all_cells["mae"] <= all_cells["mae_tally"] and all_cells["spearman"] >= all_cells["spearman_tally"],
            *all_cells.values(),
        ),
        "coverage in [0.90, 0.97]": ok(
            all(COVERAGE_RANGE[0] <= v <= COVERAGE_RANGE[1] for v in coverage.values()), *coverage.values()
        ),
        "stability k=10 >= 0.9": ok(stab >= 0.9, stab),
        "stability k=10 >= empirical Bayes's": ok(stab >= stab_eb, stab, stab_eb),
        "never worse than the best baseline by 2 SE or more": ok(
            all(c["default"] - c["best"] < 2 * c["se"] for c in [*cells.values(), sequence]),
            *[v for c in [*cells.values(), sequence] for v in (c["default"], c["best"], c["se"])],
        ),
    }
    return {
        "cells": cells,
        "sequence": sequence,
        "coverage": coverage,
        "all_cells": all_cells,
        "all_cells_coverage": all_cells_coverage,
        "stability_10": stab,
        "stability_10_eb": stab_eb,
        "checks": checks,
    }


def _versus(ours: float, best: float, name: str, se: float = math.nan) -> str:
    if math.isnan(ours) or math.isnan(best) or not name:
        return fmt(ours)
    rel = 100.0 * (ours - best) / best if best > 0 else 0.0
    noise = "" if math.isnan(se) or best <= 0 else f" ± {100.0 * se / best:.0f}"
    text = f"{ours:.3f} · {SHORT.get(name, name)} {best:.3f} ({rel:+.0f}{noise} %)"
    return f"**{text}**" if ours <= best else text


def _knobs(knobs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in knobs.items()) or "default knobs"


def render_panel_markdown(panel: Mapping[str, Any]) -> str:
    """Render the panel results as Markdown: one table of the default against the best baseline, then the checks.

    Parameters
    ----------
    panel
        ``{"settings": {...}, "screens": {name: results}}`` (see this module's docstring).

    Returns
    -------
    The Markdown text of ``panel.md``.
    """
    settings = panel.get("settings") or {}
    screens = panel.get("screens") or {}
    seeds = settings.get("seeds") or []
    steps = settings.get("max_steps")
    ks = [int(k) for k in settings.get("ks") or (2, 5, 10, 25, 60)]
    lines = [
        "# The panel: the default against the best baseline on every simulated screen",
        "",
        f"Measured with `{settings.get('command') or 'perturbscore reproduce --panel'}`: "
        f"{'the default step count' if not steps else f'{steps} training steps (a shorter run than the shipped default)'}, "
        f"training seeds {', '.join(str(s) for s in seeds)}; every value is the mean over the seeds. Each screen is "
        f"simulated with seed {settings.get('sim_seed', 0)} and {settings.get('sim_unseen', 0)} genes with features "
        "but no cells, and evaluated on "
        + (
            f"every knockout, each held out once ({settings['folds']}-fold over knockouts), "
            if settings.get("folds")
            else "its 10 held-out knockouts (the seed's 50/10 split), "
        )
        + f"{settings.get('n_resamples', DASH)} resamples x 16 targets per k.",
        "",
        "Each MAE cell: the default's reported number (head blended with empirical Bayes) · the best baseline at "
        "that column (cells: empirical, shrunk, EB = empirical Bayes; sequence only: EB prior, train mean, ridge, "
        "PCR, k-NN, each CV-tuned) and the default's difference from it, ± its standard error over the held-out "
        "knockouts (each knockout's difference averaged over seeds: seeds do not change which knockouts were held "
        "out, so a gap within about two standard errors is the luck of the split); bold where the default is at or "
        "below it. "
        "Coverage: share of held-out rows whose true distance lies in the 95 % interval at k = 2 / 10 / 60 / "
        "sequence only (and, in brackets, with all cells against the generating mix's distance). All cells: every cell of each held-out knockout, as `score` reports it, against the "
        "distance of the generating mix: MAE and Spearman of the default (label tally in brackets). Stability: "
        "the share of the statistic's variance that lies between knockouts, from 10 cells (in brackets: that of "
        "empirical Bayes's posterior mix from the same cells, which reads only their labels and the features).",
        "",
    ]
    header = ["screen", *[f"k={k}" for k in ks], "sequence only", "coverage 2 / 10 / 60 / seq (all cells)", "all cells MAE",
              "all cells Spearman", "stability k=10 (EB)"]  # fmt: skip
    rows, summaries = [], {}
    for name, res in screens.items():
        s = screen_checks(res)
        summaries[name] = s
        cov = " / ".join(fmt(s["coverage"][k], 2) for k in (*COVERAGE_KS, 0)) + f" ({fmt(s['all_cells_coverage'], 2)})"
        ac = s["all_cells"]
        rows.append(
            [
                f"{name} ({_knobs(res.get('knobs') or {})})",
                *[_versus(c["default"], c["best"], c["best_name"], c["se"]) for k in ks if (c := s["cells"].get(k))],
                _versus(s["sequence"]["default"], s["sequence"]["best"], s["sequence"]["best_name"], s["sequence"]["se"]),
                cov,
                f"{fmt(ac['mae'])} ({fmt(ac['mae_tally'])})",
                f"{fmt(ac['spearman'])} ({fmt(ac['spearman_tally'])})",
                f"{fmt(s['stability_10'])} ({fmt(s['stability_10_eb'])})",
            ]
        )  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if summaries:
        names = list(next(iter(summaries.values()))["checks"])
        lines += ["", "## Checks (✓ holds, ✗ does not, – not applicable)", ""]
        lines += ["| check | " + " | ".join(summaries) + " |", "|---|" + "---|" * len(summaries)]
        mark = {True: "✓", False: "✗", None: "–"}
        for check in names:
            lines.append(f"| {check} | " + " | ".join(mark[s["checks"][check]] for s in summaries.values()) + " |")
        lines += [
            "",
            "Diagnosis: the distance head alone (before the blend), held-out MAE per k and sequence only: "
            + "; ".join(
                f"{n} "
                + " / ".join(fmt(s["cells"][k]["head"]) for k in ks if k in s["cells"])
                + f" / {fmt(s['sequence']['head'])}"
                for n, s in summaries.items()
            )
            + ".",
        ]
    lines += render_removal_markdown(screens)
    return "\n".join(lines) + "\n"
