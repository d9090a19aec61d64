"""The panel table: the default against the best baseline on every screen of the simulated panel.

``panel`` (as :func:`perturbscore.evaluation.reproduce_panel` returns and writes to ``panel.json``)::

    {"settings": {"command": str, "seeds": [...], "max_steps": int | None, "sim_seed": int, ...},
     "screens": {name: <reproduce results of that screen, plus "knobs": {...}>}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._evaltable import paired_se, summarise

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
DASH = "—"


def _m(values: Any) -> float:
    return summarise(values)[0]


def _at(entry: Mapping[str, Any] | None, key: str, k: int | None = None) -> float:
    """Mean over seeds of ``entry[key]`` (or ``entry[key][k]``), NaN when absent."""
    raw = (entry or {}).get(key)
    if k is not None:
        raw = {int(kk): v for kk, v in (raw or {}).items()}.get(k)
    return _m(raw)


def _best(baselines: Mapping[str, Any], names: tuple[str, ...], key: str, k: int | None = None) -> tuple[str, float]:
    vals = {n: _at(baselines.get(n), key, k) for n in names if n in baselines}
    vals = {n: v for n, v in vals.items() if not math.isnan(v)}
    if not vals:
        return "", math.nan
    name = min(vals, key=lambda n: vals[n])
    return name, vals[name]


def screen_checks(res: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers and done-when checks of one screen's results (means over training seeds).

    Returns
    -------
    ``{"cells": {k: {...}}, "sequence": {...}, "coverage": {...}, "all_cells": {...}, "stability_10": float,
    "checks": {name: bool | None}}`` (``None``: not measured).
    """
    model = (res.get("models") or {}).get("perturbscore") or {}
    base = res.get("baselines") or {}
    knobs = res.get("knobs") or {}
    ks = [int(k) for k in res.get("ks") or []]
    cells: dict[int, dict[str, Any]] = {}
    for k in ks:
        name, best = _best(base, CELL_BASELINES, "mae_cells", k)
        ours = _at(model, "mae_cells", k)
        cells[k] = {
            "default": ours, "head": _at(model, "mae_cells_head", k), "best": best, "best_name": name,
            "se": paired_se(model, base.get(name), "knockout_mae_cells", k),
        }  # fmt: skip
    seq_name, seq_best = _best(base, SEQUENCE_BASELINES, "mae_sequence")
    reg_name, reg_best = _best(base, FEATURE_REGRESSIONS, "mae_sequence")
    sequence: dict[str, Any] = {
        "default": _at(model, "mae_sequence"),
        "head": _at(model, "mae_sequence_head"),
        "best": seq_best,
        "best_name": seq_name,
        "se": paired_se(model, base.get(seq_name), "knockout_mae_sequence"),
        "best_regression": reg_best,
        "best_regression_name": reg_name,
        "train_mean": _at(base.get("train_mean"), "mae_sequence"),
    }
    coverage = {k: _at(model, "coverage", k) for k in COVERAGE_KS} | {0: _at(model, "coverage_sequence")}
    all_cells = {key: _at(model.get("all_cells"), key) for key in ("mae", "mae_tally", "spearman", "spearman_tally")}
    all_cells_coverage = _at(model.get("all_cells"), "coverage")
    stab = _at(model, "stability", 10)

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
        "checks": checks,
    }


#: Prefix of the ablation's variants, the default less one component (``reproduce --panel --ablation``).
VARIANT_PREFIX = "default-"
#: Columns a removal is judged on: held-out MAE at these cell counts, then sequence only.
REMOVAL_KS = (2, 10, 60)
#: Cell counts at which the ablation table gives the statistic's stability with and without each component.
REMOVAL_STABILITY_KS = (2, 10)
#: A change of at least this many standard errors is more than the luck of the split and the seeds.
NOISE_SE = 2.0
#: The same for one screen's change in the ablation table: a component is judged on its 4 columns on every screen
#: (28 changes on 7 screens), and at 2 standard errors about one component in two would hurt somewhere by chance
#: alone; 3 is the Bonferroni threshold for that many one-sided tests at 5 %.
SCREEN_NOISE_SE = 3.0


def removal_effects(res: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Measure what removing each component of the default changes on one screen.

    Parameters
    ----------
    res
        One screen's reproduce results, with the default (``"perturbscore"``) and variants named
        ``"default-<component>"`` among its models.

    Returns
    -------
    ``{component: {"columns": {"k=2": {"delta": float, "se": float}, ..., "sequence": {...}}, "stability":
    {k: (variant, default)}}}`` (stability at :data:`REMOVAL_STABILITY_KS` cells): ``delta`` is the variant's held-out MAE less the default's (mean over seeds; positive:
    the removal hurts), ``se`` its paired standard error over the held-out knockouts.
    """
    models = res.get("models") or {}
    default = models.get("perturbscore")
    if default is None:
        return {}
    effects: dict[str, dict[str, Any]] = {}
    for name, entry in models.items():
        if not name.startswith(VARIANT_PREFIX):
            continue
        columns = {
            f"k={k}": {
                "delta": _at(entry, "mae_cells", k) - _at(default, "mae_cells", k),
                "se": paired_se(entry, default, "knockout_mae_cells", k),
            }
            for k in REMOVAL_KS
        }
        columns["sequence"] = {
            "delta": _at(entry, "mae_sequence") - _at(default, "mae_sequence"),
            "se": paired_se(entry, default, "knockout_mae_sequence"),
        }
        effects[name.removeprefix(VARIANT_PREFIX)] = {
            "columns": columns,
            "stability": {k: (_at(entry, "stability", k), _at(default, "stability", k)) for k in REMOVAL_STABILITY_KS},
        }
    return effects


def pooled_effect(columns: list[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Pool one component's removal over screens: the mean change in each column and its standard error.

    Screens are separate simulations with their own held-out knockouts, so their errors add in quadrature:
    ``se = sqrt(sum se_s^2) / S`` over the ``S`` screens that measured the column.
    """
    pooled: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(n for c in columns for n in c):
        measured = [c[name] for c in columns if name in c and not math.isnan(_z(c[name]))]
        if not measured:
            continue
        n = len(measured)
        pooled[name] = {
            "delta": sum(c["delta"] for c in measured) / n,
            "se": math.sqrt(sum(c["se"] ** 2 for c in measured)) / n,
        }
    return pooled


def _z(c: Mapping[str, float]) -> float:
    """Express the change in standard errors (infinite for a change shared by every knockout alike)."""
    delta, se = c["delta"], c["se"]
    if math.isnan(delta) or math.isnan(se) or delta == 0:
        return math.nan if math.isnan(delta) or math.isnan(se) else 0.0
    return delta / se if se > 0 else math.copysign(math.inf, delta)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _extremes(columns: Mapping[str, Mapping[str, float]], noise: float) -> str:
    """Name the column where the removal hurts most and the one where it helps most, each with its z.

    Bold where ``|z|`` reaches ``noise``.
    """
    zs = {name: _z(c) for name, c in columns.items() if not math.isnan(_z(c))}
    if not zs:
        return DASH
    parts = []
    for name in dict.fromkeys((max(zs, key=lambda n: zs[n]), min(zs, key=lambda n: zs[n]))):
        text = f"{columns[name]['delta']:+.4f} {name} ({zs[name]:+.1f})"
        parts.append(f"**{text}**" if abs(zs[name]) >= noise else text)
    return " / ".join(parts)


def render_removal_markdown(screens: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown lines of the ablation across the panel: what removing each component does on every screen.

    A removal hurts (or helps) beyond noise when its change pooled over the panel reaches :data:`NOISE_SE`
    standard errors in some column, or one screen's change reaches :data:`SCREEN_NOISE_SE`. Empty when no
    screen's results hold ablation variants.
    """
    effects = {name: removal_effects(res) for name, res in screens.items()}
    components = list(dict.fromkeys(c for e in effects.values() for c in e))
    if not components:
        return []
    lines = [
        "",
        "## Each component's removal across the panel",
        "",
        "Each cell: held-out MAE of the default without the component, less the default's, at the column "
        f"({', '.join(f'k={k}' for k in REMOVAL_KS)} cells or sequence only) where the removal hurts most, then "
        "where it helps most, each with its change in standard errors over the held-out knockouts (paired, each "
        "knockout's change averaged over seeds). Panel: the change of each column averaged over the screens (their "
        "standard errors added in quadrature). Bold, and counted in the verdict, where the change is beyond the luck "
        f"of the split and seeds: {NOISE_SE:g} standard errors for the panel's mean, {SCREEN_NOISE_SE:g} for one "
        f"screen (a component is judged on {len(REMOVAL_KS) + 1} columns of {len(effects)} screens, and so many "
        f"changes would cross {NOISE_SE:g} somewhere by chance alone); the verdict reads these errors only. Stability: "
        f"the statistic's stability at {' / '.join(map(str, REMOVAL_STABILITY_KS))} cells without the component "
        "(the default's in brackets), mean over screens.",
        "",
        "| component | "
        + " | ".join(effects)
        + f" | panel | stability k={' / '.join(map(str, REMOVAL_STABILITY_KS))} | verdict |",
        "|---|" + "---|" * (len(effects) + 3),
    ]
    for comp in components:
        cells, found, stab = [], [], []
        hurt, helped = [], []
        for screen, eff in effects.items():
            e = eff.get(comp)
            if e is None:
                cells.append(DASH)
                continue
            cells.append(_extremes(e["columns"], SCREEN_NOISE_SE))
            found.append(e["columns"])
            zs = [_z(c) for c in e["columns"].values()]
            hurt += [screen] if any(z >= SCREEN_NOISE_SE for z in zs) else []
            helped += [screen] if any(z <= -SCREEN_NOISE_SE for z in zs) else []
            stab.append(e["stability"])
        pooled = pooled_effect(found)
        pooled_z = [_z(c) for c in pooled.values()]
        hurt = (["the panel"] if any(z >= NOISE_SE for z in pooled_z) else []) + hurt
        helped = (["the panel"] if any(z <= -NOISE_SE for z in pooled_z) else []) + helped
        verdict = "; ".join(
            [f"hurts on {', '.join(hurt)}"] * bool(hurt) + [f"helps on {', '.join(helped)}"] * bool(helped)
        )
        stability = [[_mean([s[k][i] for s in stab]) for k in REMOVAL_STABILITY_KS] for i in (0, 1)]
        variant, default = (" / ".join(_f(v) for v in values) for values in stability)
        lines.append(
            f"| {comp} | "
            + " | ".join([*cells, _extremes(pooled, NOISE_SE)])
            + f" | {variant} ({default}) | {verdict or 'within noise'} |"
        )
    return lines


def _f(x: float, digits: int = 3) -> str:
    return DASH if math.isnan(x) else f"{x:.{digits}f}"


def _versus(ours: float, best: float, name: str, se: float = math.nan) -> str:
    if math.isnan(ours) or math.isnan(best) or not name:
        return _f(ours)
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
        "distance of the generating mix: MAE and Spearman of the default (label tally in brackets).",
        "",
    ]
    header = ["screen", *[f"k={k}" for k in ks], "sequence only", "coverage 2 / 10 / 60 / seq (all cells)", "all cells MAE",
              "all cells Spearman", "stability k=10"]  # fmt: skip
    rows, summaries = [], {}
    for name, res in screens.items():
        s = screen_checks(res)
        summaries[name] = s
        cov = " / ".join(_f(s["coverage"][k], 2) for k in (*COVERAGE_KS, 0)) + f" ({_f(s['all_cells_coverage'], 2)})"
        ac = s["all_cells"]
        rows.append(
            [
                f"{name} ({_knobs(res.get('knobs') or {})})",
                *[_versus(c["default"], c["best"], c["best_name"], c["se"]) for k in ks if (c := s["cells"].get(k))],
                _versus(s["sequence"]["default"], s["sequence"]["best"], s["sequence"]["best_name"], s["sequence"]["se"]),
                cov,
                f"{_f(ac['mae'])} ({_f(ac['mae_tally'])})",
                f"{_f(ac['spearman'])} ({_f(ac['spearman_tally'])})",
                _f(s["stability_10"]),
            ]
        )  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if summaries:
        names = list(next(iter(summaries.values()))["checks"])
        lines += ["", "## Done-when checks (✓ holds, ✗ does not, – not applicable)", ""]
        lines += ["| check | " + " | ".join(summaries) + " |", "|---|" + "---|" * len(summaries)]
        mark = {True: "✓", False: "✗", None: "–"}
        for check in names:
            lines.append(f"| {check} | " + " | ".join(mark[s["checks"][check]] for s in summaries.values()) + " |")
        lines += [
            "",
            "Diagnosis: the distance head alone (before the blend), held-out MAE per k and sequence only: "
            + "; ".join(
                f"{n} "
                + " / ".join(_f(s["cells"][k]["head"]) for k in ks if k in s["cells"])
                + f" / {_f(s['sequence']['head'])}"
                for n, s in summaries.items()
            )
            + ".",
        ]
    lines += render_removal_markdown(screens)
    return "\n".join(lines) + "\n"
