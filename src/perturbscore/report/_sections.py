"""The report's sections as plain data for the template.

What was asked, the answer, caveats, how good the model is, the gene programs and the training diagnostics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation import summarise
from ..io import describe_mix
from ._caveats import derive_caveats, merge_caveats, score_caveats, validation_size
from ._runfiles import FILES, RunFiles, figure, figures_of, note

logger = logging.getLogger(__name__)

#: Rows of each target's ranked table.
TOP_ROWS = 20
#: Candidates named above each table.
TOP_NAMED = 3

#: Plain names of the methods in ``eval.json``, and what each uses.
METHODS: dict[str, tuple[str, str]] = {
    "perturbscore": ("This model", "the knockout's cells, and its sequence where it has features"),
    "full": ("This model", "the knockout's cells and its sequence"),
    "seed_baseline": ("Model without the sequence network", "the knockout's cells"),
    "empirical": ("Observed state labels", "the state labels of the same cells"),
    "shrunk": ("Observed labels, pulled towards the average", "the state labels of the same cells"),
    "empirical_bayes": (
        "Observed labels, pulled towards a sequence prior",
        "the same cells' labels and the gene's sequence features",
    ),
    "train_mean": ("Average training knockout", "nothing: the same mix for every gene"),
    "ridge": ("Ridge regression", "sequence features"),
    "pcr": ("Principal-component regression", "sequence features"),
    "knn": ("Most similar genes by sequence", "sequence features"),
    "oracle": ("True mix (simulated screens only)", "the true answer: the best any method can do"),
}


# -- small pieces ---------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)) or value is pd.NA:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}f}"
    return str(value)


def _fmt_p(value: Any) -> str:
    """Format a p- or q-value: three decimals, or two significant digits below 0.001 (``3.2e-08``)."""
    if value is None or pd.isna(value):
        return "—"
    return f"{float(value):.3f}" if float(value) >= 0.001 else f"{float(value):.1e}"


def _cell(text: Any, *, bold: bool = False) -> dict[str, Any]:
    return {"text": text if isinstance(text, str) else _fmt(text), "bold": bold}


def _table(columns: list[tuple[str, bool]], rows: list[list[Any]], **kw: Any) -> dict[str, Any]:
    """Build a table for the template: ``columns`` as ``(label, numeric)``, rows of values or cell dicts."""
    cols = [{"label": label, "num": num} for label, num in columns]
    body = [{"cells": [c if isinstance(c, dict) else _cell(c) for c in row], "cls": None} for row in rows]
    return {"columns": cols, "rows": body, "caption": kw.pop("caption", None), "cls": kw.pop("cls", None), **kw}


def _genes(text: Any, n: int = 10) -> str:
    genes = [g for g in str(text or "").replace(",", ";").split(";") if g.strip()]
    shown = ", ".join(g.strip() for g in genes[:n])
    return shown + (f" … (+{len(genes) - n} more)" if len(genes) > n else "")


def _states_text(row: pd.Series, states: list[str]) -> str:
    """Spell out the predicted mix of a row, largest shares first, states of at least 10 % (or the largest)."""
    shares = {s: row.get(f"pred_{s.replace(' ', '_')}") for s in states}
    shares = {s: float(v) for s, v in shares.items() if v is not None and pd.notna(v)}
    if not shares:
        return "—"
    order = sorted(shares, key=lambda s: -shares[s])
    shown = [s for s in order if shares[s] >= 0.1] or order[:1]
    return ", ".join(f"{s} {100 * shares[s]:.0f}%" for s in shown)


# -- sections ---------------------------------------------------------------------------------------------------------
def _targets_info(scores: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per target (in table order): its mix and constraints, from the params or else from the columns."""
    params = scores.attrs.get("params", {}) or {}
    recorded: dict[str, Any] = params["targets"] if isinstance(params.get("targets"), dict) else {}
    states = [str(s) for s in params.get("states", [])]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(scores["target"].astype(str)) if "target" in scores else ["(single target)"]:
        info: dict[str, Any] = recorded[name] if isinstance(recorded.get(name), dict) else {}
        mix = info.get("mix")
        if isinstance(mix, dict) and states:
            described = describe_mix(np.array([float(mix.get(s, 0.0)) for s in states]), states)
        else:
            described = str(info.get("description") or _first(scores, name, "target_mix") or "mix not recorded")
        cons = info.get("constraints_described") or info.get("constraints") or []
        if not cons and (c := _first(scores, name, "constraint")) and c != "none":
            cons = [c]
        out[name] = {"mix": described, "constraints": [str(c) for c in cons]}
    return out


def _first(scores: pd.DataFrame, target: str, column: str) -> str | None:
    if column not in scores or "target" not in scores:
        return None
    values = scores.loc[scores["target"].astype(str) == target, column].dropna()
    return str(values.iloc[0]) if len(values) else None


def section_asked(run: RunFiles) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": list(run.errors.get("asked", []))}
    scores = run.scores
    if scores is None or scores.empty:
        out["notes"].append(note("No knockouts were scored in this run. Score them with `perturbscore score RUN "
                                  "--screen SCREEN --target ...` and build the report again."))  # fmt: skip
    else:
        info = _targets_info(scores)
        params = scores.attrs.get("params", {}) or {}
        mode = params.get("constraint_mode", "filter")
        out["question"] = (
            "Which knockouts move the cells closest to each target mix below? Closeness is the total-variation "
            "distance between the knockout's mix of cell states and the target: 0 is the target exactly, 1 shares "
            "no state with it."
            + (" A knockout that breaks a target's constraint is not ranked for that target." if mode == "filter"
               else " A knockout that breaks a target's constraint is ranked after those that meet it.")
        )  # fmt: skip
        rows = [[name, i["mix"], "; ".join(i["constraints"]) or "none"] for name, i in info.items()]
        out["targets"] = _table([("Target", False), ("Target mix of cell states", False), ("Constraint", False)],
                                rows)  # fmt: skip
    out["screen"] = _screen_sentence(run)
    return out


def _screen_sentence(run: RunFiles) -> str | None:
    s = run.summary or (run.config or {}).get("screen")
    if not isinstance(s, dict):
        return None
    n_pert, control = s.get("n_perturbations"), s.get("control")
    knockouts = (n_pert - 1 if control else n_pert) if isinstance(n_pert, int) else None
    states = ", ".join(str(x) for x in s.get("states") or [])
    text = f"Screen: {_fmt(s.get('n_cells'))} cells"
    if knockouts is not None:
        text += f", {knockouts} knockouts" + (f" and the control ({control})" if control else "")
    text += f"; cell states: {states}." if states else "."
    if run.scores is not None and "source" in run.scores:
        seq = run.scores.loc[run.scores["source"] == "sequence", "gene"].nunique()
        if seq:
            text += f" {seq:,} more genes, without cells, were scored from their sequence features alone."
    return text


def section_answer(run: RunFiles) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": list(run.errors.get("answer", [])), "targets": []}
    scores = run.scores
    if scores is None or scores.empty:
        out["notes"].append(note("No scores in this run (scores.csv): nothing to rank yet."))
        return out
    params = scores.attrs.get("params", {}) or {}
    states = [str(s) for s in params.get("states", [])] or [c[5:].replace("_", " ") for c in scores if c.startswith("pred_") and c != "pred_distance"]  # fmt: skip
    info = _targets_info(scores)
    train = set((run.split or {}).get("train") or [])
    sequence = params.get("sequence") or {}
    for i, (name, sub) in enumerate(scores.groupby("target", sort=False) if "target" in scores else [("(single target)", scores)]):  # fmt: skip
        name = str(name)
        t_info = info.get(name, {"mix": "", "constraints": []})
        ranked = sub[sub["rank"].notna()].sort_values("rank", kind="stable") if "rank" in sub else sub
        cons = "; ".join(t_info["constraints"])
        entry: dict[str, Any] = {
            "heading": f"Target: {name}",
            "mix": f"Target mix: {t_info['mix']}." + (f" Constraint: {cons}." if cons else ""),
            "top": [_candidate(r) for _, r in ranked.head(TOP_NAMED).iterrows()],
            "notes": [],
        }
        n_fail = int((~sub["constraint_ok"].astype(bool)).sum()) if "constraint_ok" in sub else 0
        if n_fail and params.get("constraint_mode", "filter") == "filter":
            who = "1 knockout breaks" if n_fail == 1 else f"{n_fail} knockouts break"
            entry["notes"].append(note(f"{who} the constraint ({cons}) and {'is' if n_fail == 1 else 'are'} not "
                                        "ranked."))  # fmt: skip
        flagged = sub[sub["flag"].astype(str).str.len() > 0] if "flag" in sub else sub.iloc[:0]
        if len(flagged):
            entry["notes"].append(note(f"{flagged['gene'].nunique():,} genes scored from sequence alone are not "
                                        f"ranked: {sequence.get('reason') or 'see the caveats'}.", "warning"))  # fmt: skip
        entry["table"] = _ranked_table(ranked.head(TOP_ROWS), states, train, total=len(ranked))
        stem = f"ranking_{i + 1}" if f"ranking_{i + 1}" in run.figures else ("ranking" if i == 0 else None)
        entry["figures"] = ([figure(run, stem, f"The {min(TOP_ROWS, len(ranked))} closest knockouts to {name}: "
                                                "predicted distance with its 95% interval.")]
                            if stem and stem in run.figures else [])  # fmt: skip
        out["targets"].append(entry)
    return out


def _candidate(r: pd.Series) -> dict[str, str]:
    interval = (f" (95% interval {r['lo']:.3f}–{r['hi']:.3f})" if pd.notna(r.get("lo")) and pd.notna(r.get("hi"))
                else " (no interval)")  # fmt: skip
    text = f"predicted distance {_fmt(r.get('pred_distance'))}{interval}"
    if r.get("source") == "cells":
        text += f"; observed {_fmt(r.get('empirical_distance'))} from {_fmt(r.get('n_cells'))} cells"
    else:
        text += "; scored from its sequence alone (no cells)"
    return {"gene": str(r.get("gene")), "text": text + "."}


def _ranked_table(rows: pd.DataFrame, states: list[str], train: set[str], *, total: int) -> dict[str, Any]:
    columns = [("Rank", True), ("Gene", False), ("Scored from", False), ("Predicted distance", True),
               ("95% interval", True), ("Observed distance", True), ("Cells", True), ("Predicted mix", False),
               ("Meets constraint", False), ("Used in training", False)]  # fmt: skip
    body = []
    for _, r in rows.iterrows():
        interval = f"{r['lo']:.3f}–{r['hi']:.3f}" if pd.notna(r.get("lo")) and pd.notna(r.get("hi")) else "—"
        source = "cells" if r.get("source") == "cells" else "sequence only"
        body.append([
            _fmt(r.get("rank")), str(r.get("gene")), source, _fmt(r.get("pred_distance")), interval,
            _fmt(r.get("empirical_distance")), _fmt(r.get("n_cells")) if r.get("source") == "cells" else "—",
            _states_text(r, states), _fmt(bool(r.get("constraint_ok", True))),
            ("yes" if r.get("gene") in train else "no") if train else "—",
        ])  # fmt: skip
    caption = f"The {len(rows)} closest of {total:,} ranked knockouts (lower distance is closer to the target)."
    return _table(columns, body, caption=caption, cls="ranked")


def section_caveats(run: RunFiles) -> list[str]:
    derived = derive_caveats(run.evaluation, split=run.split) if run.evaluation else []
    scores = score_caveats(run.scores, split=run.split) if run.scores is not None else []
    extra = []
    if not run.evaluation:
        extra.append("This run was not compared with the baselines, so how far its scores can be trusted is unknown; "
                     "run `perturbscore evaluate RUN --screen SCREEN`.")  # fmt: skip
    elif (n := validation_size(run.evaluation, run.split)) is not None and n == 0:
        extra.append("The model was checked on no held-out knockout: its accuracy is unknown.")
    return merge_caveats(derived, run.caveats, extra, scores)


def section_quality(run: RunFiles) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": list(run.errors.get("quality", [])), "figures": figures_of(run, "quality")}
    res = run.evaluation
    if not res:
        out["notes"].append(note("This run has no evaluation (eval.json). `perturbscore evaluate RUN --screen "
                                  "SCREEN` compares the model with simple baselines on held-out knockouts."))  # fmt: skip
        return out
    k = res.get("eval_k") or 10
    n_val = validation_size(res, run.split)
    seeds = res.get("seeds") or []
    held = f"{n_val} held-out knockouts" if n_val is not None else "the held-out knockouts"
    out["intro"] = (
        f"Each method predicted how far each of {held} (none used in training) lies from target mixes drawn like "
        f"the training targets, from {k} of its cells or from its sequence alone. Its error is the mean absolute "
        "difference from the true distance."
    )
    columns = [("Method", False), ("Uses", False), (f"Error with {k} cells", True), ("Error from sequence alone", True),
               (f"Ranking agreement with {k} cells (Spearman)", True), ("Top-3 hit rate", True)]  # fmt: skip
    entries = [(n, e or {}) for g in ("models", "baselines") for n, e in (res.get(g) or {}).items()]
    grid = [[_by_k(e.get("mae_cells"), k), e.get("mae_sequence"), e.get("spearman"), e.get("top3")] for _, e in entries]
    best = _best(grid, [n for n, _ in entries], higher=[False, False, True, True])
    rows = []
    for (name, _), values, bold in zip(entries, grid, best, strict=True):
        label, uses = METHODS.get(name, (name, ""))
        rows.append([label, uses, *(_cell(_pm(v), bold=b) for v, b in zip(values, bold, strict=True))])
    out["table"] = _table(columns, rows)
    runs = f" over {len(seeds)} training runs (mean ± spread)" if len(seeds) > 1 else ""
    out["footnote"] = (f"Errors and distances run from 0 to 1; lower error is better, higher agreement and hit rate "
                       f"are better; the best of each column is bold{runs}. — : does not apply.")  # fmt: skip
    return out


def _by_k(by_k: Any, k: int) -> Any:
    if not isinstance(by_k, Mapping):
        return None
    return {int(kk): v for kk, v in by_k.items()}.get(int(k))


def _pm(values: Any) -> str:
    mean, sd = summarise(values)
    if mean != mean:
        return "—"
    n = np.atleast_1d(np.asarray(values, dtype=float)).size
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if n > 1 else "")


def _best(grid: list[list[Any]], names: list[str], *, higher: list[bool]) -> list[list[bool]]:
    """Mark each column's best mean (the oracle, a reference, never)."""
    out = [[False] * len(higher) for _ in grid]
    for j, hi in enumerate(higher):
        means = [summarise(row[j])[0] if names[i] != "oracle" else np.nan for i, row in enumerate(grid)]
        finite = [m for m in means if m == m]
        if not finite:
            continue
        target = max(finite) if hi else min(finite)
        for i, m in enumerate(means):
            out[i][j] = m == target
    return out


def section_programs(run: RunFiles) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": list(run.errors.get("programs", [])), "figures": figures_of(run, "programs"),
                           "enrichment_figures": figures_of(run, "enrichment")}  # fmt: skip
    res = run.programs
    if res is None:
        out["notes"].append(note("No gene programs in this run: `perturbscore programs RUN --screen SCREEN "
                                  "--gene-sets FILE.gmt` lists each program's genes and enriched gene sets."))  # fmt: skip
        return out
    out["intro"] = ("The model reads each cell through a handful of gene programs (weighted sums of genes). The genes "
                    "that weigh most, each way, tell what a program stands for.")  # fmt: skip
    top = res.top_genes
    rows = []
    if {"program", "sign", "gene"} <= set(top.columns):
        order = top.sort_values("rank", kind="stable") if "rank" in top else top
        for program, sub in order.groupby("program", sort=False):
            genes = {s: ", ".join(sub.loc[sub["sign"] == s, "gene"].astype(str).head(8)) or "—" for s in ("+", "-")}
            rows.append([str(program).replace("_", " "), genes["+"], genes["-"]])
    out["top"] = _table([("Program", False), ("Top genes, positive weight", False),
                         ("Top genes, negative weight", False)], rows)  # fmt: skip
    enr = res.enrichment
    if enr is not None and not enr.empty and "q" in enr:
        enr = enr.assign(_q=pd.to_numeric(enr["q"], errors="coerce")).sort_values(["_q", "p"], kind="stable")
        n_sig = int((enr["_q"] < 0.05).sum())
        shown = enr[enr["_q"] < 0.25].head(15)
        shown = shown if len(shown) else enr.head(5)
        out["enrichment_intro"] = (f"{len(enr)} tests of gene sets against the programs; {n_sig} with q < 0.05 "
                                   "(Benjamini–Hochberg). The most significant:")  # fmt: skip
        rows = [[str(r.get("program", "")).replace("_", " "),
                 {"+": "positive", "-": "negative"}.get(str(r.get("direction")), str(r.get("direction", ""))),
                 str(r.get("set")), str(r.get("method", "")), _fmt_p(r.get("_q")), _genes(r.get("genes"))]
                for _, r in shown.iterrows()]  # fmt: skip
        out["enrichment"] = _table([("Program", False), ("Weights", False), ("Gene set", False), ("Test", False),
                                    ("q", True), ("Genes driving it", False)], rows)  # fmt: skip
    return out


def section_diagnostics(run: RunFiles) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": list(run.errors.get("diagnostics", [])) + list(run.errors.get("caveats", [])),
                           "figures": figures_of(run, "diagnostics")}  # fmt: skip
    m = run.metrics
    if m is not None and len(m):
        steps = int(m["step"].max()) if "step" in m and m["step"].notna().any() else len(m)
        rows = []
        for col, label in (("train_pred_loss", "Training prediction loss"), ("val_pred_loss", "Validation "
                           "prediction loss"), ("train_rec_loss", "Training sequence loss"), ("val_rec_loss",
                           "Validation sequence loss")):  # fmt: skip
            if col in m and m[col].notna().any():
                s = m[col].dropna()
                rows.append([label, _fmt(s.iloc[0]), _fmt(s.iloc[-1]), _fmt(s.min())])
        if rows:
            out["training"] = _table([("Loss", False), ("First", True), ("Last", True), ("Lowest", True)], rows,
                                     caption=f"Trained for {steps:,} steps ({len(m)} logged epochs).")  # fmt: skip
        numeric = [c for c in m.columns if c not in ("epoch", "step") and pd.api.types.is_numeric_dtype(m[c])]
        all_rows = [[c, _fmt(m[c].dropna().iloc[-1]) if m[c].notna().any() else "—", _fmt(m[c].min())] for c in numeric]
        out["metrics"] = _table([("Logged value", False), ("Last", True), ("Lowest", True)], all_rows)
    s = run.summary
    if isinstance(s, dict):
        cpp = s.get("cells_per_perturbation") or {}
        rows = [["Source", str(s.get("source", "—"))], ["Cells", _fmt(s.get("n_cells"))],
                ["Genes measured", _fmt(s.get("n_genes"))], ["Perturbations (control included)",
                _fmt(s.get("n_perturbations"))], ["Control", str(s.get("control") or "none")],
                ["Cell states", ", ".join(map(str, s.get("states") or []))],
                ["Cells per perturbation (min / median / max)",
                 f"{_fmt(cpp.get('min'))} / {_fmt(cpp.get('median'), 0)} / {_fmt(cpp.get('max'))}"],
                ["Sequence features (windows, dimensions)", str(s.get("features") or "none")]]  # fmt: skip
        out["screen"] = _table([("What", False), ("Value", False)], rows)
    for name in ("config.json", "config.yaml"):
        path = run.path / name
        if path.is_file() and not any(e["text"].startswith(name) for e in out["notes"]):
            text = path.read_text(encoding="utf-8")
            if name.endswith(".json") and run.config is not None:
                text = json.dumps(run.config, indent=2)
            out["config"], out["config_name"] = text, name
            break
    out["missing"] = [{"file": f, "what": FILES.get(f, "")} for f in run.missing]
    return out
