"""The ablation across the panel: what removing each component of the default does on every screen."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._cells import DASH, at, fmt, paired_se, summarise

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
    {k: (variant, default)}}}`` (stability at :data:`REMOVAL_STABILITY_KS` cells): ``delta`` is the variant's
    held-out MAE less the default's (mean over seeds; positive: the removal hurts), ``se`` its paired standard
    error over the held-out knockouts.
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
                "delta": at(entry, "mae_cells", k) - at(default, "mae_cells", k),
                "se": paired_se(entry, default, "knockout_mae_cells", k),
            }
            for k in REMOVAL_KS
        }
        columns["sequence"] = {
            "delta": at(entry, "mae_sequence") - at(default, "mae_sequence"),
            "se": paired_se(entry, default, "knockout_mae_sequence"),
        }
        effects[name.removeprefix(VARIANT_PREFIX)] = {
            "columns": columns,
            "stability": {k: (at(entry, "stability", k), at(default, "stability", k)) for k in REMOVAL_STABILITY_KS},
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
        stability = [[summarise([s[k][i] for s in stab])[0] for k in REMOVAL_STABILITY_KS] for i in (0, 1)]
        variant, default = (" / ".join(fmt(v) for v in values) for values in stability)
        lines.append(
            f"| {comp} | "
            + " | ".join([*cells, _extremes(pooled, NOISE_SE)])
            + f" | {variant} ({default}) | {verdict or 'within noise'} |"
        )
    return lines
