"""Target state mixes ``Q``: parse, read from files, and presets (constraints on shares: :mod:`._constraints`).

A target is a mapping state -> fraction, e.g. ``"progenitor=0.6,effector=0.1"``; states left out are 0.
State names match case-insensitively, with ``_`` or ``-`` for spaces (``terminal_exhausted``).
A mix that does not sum to 1 is renormalised with a warning. A target without a name is called after its
dominant states (``"progenitor 60% + cycling 40%"``), so a score table says what it scored.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._constants import CHALLENGE_CONTROL_MIX, CHALLENGE_STATES
from .._errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetPreset:
    """A named target shipped with perturbscore.

    ``mix`` is ``None`` for an objective that is not a single mix (see :func:`challenge_objective`).
    """

    name: str
    description: str
    mix: Mapping[str, float] | None = None
    constraints: tuple[str, ...] = ()


#: Named targets a user can ask for by name (``--target progenitor``), each a mix with its constraints.
TARGET_PRESETS: dict[str, TargetPreset] = {
    "progenitor": TargetPreset(
        "progenitor",
        "All cells progenitor: the challenge's task of maximising the progenitor share, to be read with the "
        "constraint cycling >= 0.05.",
        dict(zip(CHALLENGE_STATES, (1.0, 0.0, 0.0, 0.0, 0.0), strict=True)),
        ("cycling>=0.05",),
    ),
    "control": TargetPreset(
        "control",
        "The challenge screen's control (Unperturbed) state mix: a knockout close to it changes little.",
        dict(zip(CHALLENGE_STATES, CHALLENGE_CONTROL_MIX, strict=True)),
    ),
    "challenge-objective": TargetPreset(
        "challenge-objective",
        "The challenge objective a/0.0675 + b/0.2097 - c/0.3134 + d/0.3921 (a..d = progenitor, effector, "
        "terminal exhausted, cycling shares; denominators = control mix). It rewards some states and penalises "
        "another, so it is not a distance to one mix: score proportions with challenge_objective() instead.",
    ),
}


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(name))).strip().lower()


def _state_lookup(states: Sequence[str]) -> dict[str, int]:
    return {_norm(s): i for i, s in enumerate(states)}


def _state_index(name: str, states: Sequence[str], *, context: str) -> int:
    lookup = _state_lookup(states)
    key = _norm(name)
    if key not in lookup:
        raise InputError(f"unknown state {name!r} in {context}; valid states: {', '.join(map(repr, states))}.")
    return lookup[key]


def mix_from_mapping(mapping: Mapping[str, object], states: Sequence[str], *, context: str) -> np.ndarray:
    """Turn ``{state: fraction}`` into a ``(C,)`` mix in ``states`` order; validate and renormalise."""
    q = np.zeros(len(states), dtype=np.float64)  # (C,)
    for name, value in mapping.items():
        i = _state_index(name, states, context=context)
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise InputError(f"fraction {value!r} for state {name!r} in {context} is not a number.") from err
        if not np.isfinite(v) or v < 0:
            raise InputError(f"fraction {value!r} for state {name!r} in {context} must be finite and >= 0.")
        q[i] += v
    with np.errstate(over="ignore"):
        total = q.sum()
    if total <= 0:
        raise InputError(f"target {context} is all zero; give at least one state a positive fraction.")
    if not np.isclose(total, 1.0, atol=1e-6):
        logger.warning("target %s sums to %.4g, not 1; renormalised", context, total)
    if not np.isfinite(total):  # finite fractions whose sum overflows: rescale before normalising
        q = q / q.max()
        total = q.sum()
    return q / total


def parse_target(text: str, states: Sequence[str]) -> np.ndarray:
    """Parse ``"progenitor=0.5,effector=0.2,..."`` into a ``(C,)`` mix in ``states`` order.

    Missing states are 0; a mix not summing to 1 is renormalised (with a logged warning).
    """
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[,;]", text))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise InputError(
                f"cannot parse {part!r} in target {text!r}; write state=fraction pairs separated by commas, "
                f"e.g. '{states[0].replace(' ', '_')}=0.6,{states[-1].replace(' ', '_')}=0.4'."
            )
        if _norm(name) in {_norm(k) for k in mapping}:
            raise InputError(f"state {name.strip()!r} is given twice in target {text!r}.")
        mapping[name.strip()] = value.strip()
    if not mapping:
        raise InputError(f"target {text!r} is empty; write state=fraction pairs separated by commas.")
    return mix_from_mapping(mapping, states, context=repr(text))


def read_targets(path: str | Path, states: Sequence[str]) -> dict[str, np.ndarray]:
    """Read named targets from a CSV/TSV table or a YAML/JSON mapping.

    A table has a name column first, then one column per state. A YAML/JSON file maps
    name -> {state: fraction}. Returns name -> ``(C,)`` mix.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"targets file {str(path)!r} does not exist; check the path (--targets).")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={0: str})
        raw = {str(row.iloc[0]): row.iloc[1:].dropna().to_dict() for _, row in table.iterrows()}
    elif suffix in (".yaml", ".yml", ".json"):
        raw = _read_mapping(path)
    else:
        raise InputError(f"targets file {str(path)!r}: unknown suffix {suffix!r}; use .csv, .tsv, .yaml or .json.")
    if not raw:
        raise InputError(f"targets file {str(path)!r} holds no targets.")
    return {name: mix_from_mapping(m, states, context=f"{name!r} of {str(path)!r}") for name, m in raw.items()}


def _read_mapping(path: Path) -> dict[str, Mapping[str, object]]:
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise InputError(f"targets file {str(path)!r} could not be parsed ({err}).") from err
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(
            f"targets file {str(path)!r} must map each target name to {{state: fraction}}, e.g. "
            "'mostly_progenitor: {progenitor: 0.8, cycling: 0.2}'."
        )
    return {str(k): v for k, v in data.items()}


def default_target_name(mix: np.ndarray, states: Sequence[str]) -> str:
    """Name a target after its dominant states, e.g. ``"progenitor 60% + cycling 40%"``.

    States with at least 10 % of the mix are listed (at most three, largest first; the largest one always).

    Parameters
    ----------
    mix
        ``(C,)`` target mix in ``states`` order.
    states
        State names.

    Returns
    -------
    str
        The name.
    """
    q = np.asarray(mix, dtype=np.float64)
    order = np.argsort(-q, kind="stable")
    shown = [i for i in order[:3] if q[i] >= 0.1] or [int(order[0])]
    return " + ".join(f"{states[i]} {_percent(q[i])}" for i in shown)


def _percent(share: float) -> str:
    pct = 100 * float(share)
    return f"{pct:.0f}%" if pct >= 1 or pct == 0 else f"{pct:.1g}%"


def describe_mix(mix: np.ndarray, states: Sequence[str]) -> str:
    """Spell a mix out for people: ``"progenitor 60%, cycling 40% (other states 0%)"``."""
    q = np.asarray(mix, dtype=np.float64)
    order = [i for i in np.argsort(-q, kind="stable") if q[i] > 0]
    text = ", ".join(f"{states[i]} {_percent(q[i])}" for i in order)
    return text + (" (other states 0%)" if len(order) < len(states) else "")


def mix_to_spec(mix: np.ndarray, states: Sequence[str]) -> str:
    """Write a mix as the ``state=fraction,...`` text :func:`parse_target` reads (zero states left out)."""
    q = np.asarray(mix, dtype=np.float64)
    return ",".join(f"{s}={v:.4g}" for s, v in zip(states, q, strict=True) if v > 0)


def resolve_target_specs(
    specs: Sequence[str], states: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Resolve target specs into named ``(C,)`` mixes and the constraints their presets bring.

    Each spec is ``"state=f,..."`` (named after its dominant states, see :func:`default_target_name`),
    ``"NAME:state=f,..."``, a preset name from :data:`TARGET_PRESETS`, or ``"NAME:PRESET"`` (a preset under
    another name). A preset's constraints (e.g. ``cycling>=0.05`` for ``progenitor``) apply to that target only.

    Returns
    -------
    tuple
        ``{name: mix}`` in spec order, and ``{name: [constraint text, ...]}`` for the targets that have some.
    """
    out: dict[str, np.ndarray] = {}
    constraints: dict[str, list[str]] = {}
    resolved: list[tuple[str | None, np.ndarray, tuple[str, ...]]] = []
    for spec in specs:
        name, mix, own = _resolve_one(str(spec).strip(), states)
        if name is not None and name in {n for n, _, _ in resolved}:
            raise InputError(f"target name {name!r} is used twice; give each target its own name (name:mix).")
        resolved.append((name, mix, own))
    taken = {n for n, _, _ in resolved if n is not None}
    for name, mix, own in resolved:  # unnamed targets are named once every given name is known
        if name is None:
            name = unique_name(default_target_name(mix, states), taken)
            taken.add(name)
        out[name] = mix
        if own:
            constraints[name] = list(own)
    return out, constraints


def unique_name(name: str, taken: set[str] | Mapping[str, Any]) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ... when it is already taken."""
    if name not in taken:
        return name
    i = 2
    while f"{name} ({i})" in taken:
        i += 1
    return f"{name} ({i})"


def resolve_targets(specs: Sequence[str], states: Sequence[str]) -> dict[str, np.ndarray]:
    """Resolve target specs into named ``(C,)`` mixes (see :func:`resolve_target_specs` for the forms)."""
    return resolve_target_specs(specs, states)[0]


#: How targets are written, quoted in the error for one that is not.
SPEC_FORMS = (
    "Write state=fraction pairs ('progenitor=0.6,cycling=0.4'), NAME:pairs ('mine:progenitor=1'), a preset or "
    "NAME:PRESET ('ctrl:control'). Write a state name with a space with _ (terminal_exhausted=1), or quote the "
    "whole target on the command line ('terminal exhausted=1')."
)


def _resolve_one(spec: str, states: Sequence[str]) -> tuple[str | None, np.ndarray, tuple[str, ...]]:
    head, sep, rest = spec.partition(":")
    if sep and "=" not in head:
        name = head.strip() or None
        rest = rest.strip()
        if "=" in rest:
            return name, parse_target(rest, states), ()
        preset = _preset(rest, spec)
        return name or preset.name, _preset_mix(preset, states), preset.constraints
    if "=" in spec:
        return None, parse_target(spec, states), ()
    preset = _preset(spec, spec)
    return preset.name, _preset_mix(preset, states), preset.constraints


def _preset(name: str, spec: str) -> TargetPreset:
    preset = TARGET_PRESETS.get(name.strip().lower())
    if preset is None:
        raise InputError(
            f"target {spec!r} is neither state=fraction pairs nor a preset; presets: {', '.join(TARGET_PRESETS)}. "
            + SPEC_FORMS
        )
    if preset.mix is None:
        raise InputError(f"preset {name!r} is not a single target mix. {preset.description}")
    return preset


def _preset_mix(preset: TargetPreset, states: Sequence[str]) -> np.ndarray:
    assert preset.mix is not None
    return mix_from_mapping(preset.mix, states, context=f"preset {preset.name!r}")


def as_targets(targets: object, states: Sequence[str]) -> dict[str, np.ndarray]:
    """Turn any accepted target form into named ``(C,)`` mixes in ``states`` order.

    Accepted: ``{'progenitor': 0.6, 'cycling': 0.4}`` (one target; states left out are 0), a
    :class:`pandas.Series` indexed by state, a ``(C,)`` array in ``states`` order, a ``(T, C)`` array, a
    :class:`pandas.DataFrame` (one target per row, one column per state), a spec string or a list of them
    (see :func:`resolve_target_specs`), or a mapping ``name -> any of the single-target forms``. Unnamed
    targets are named after their dominant states (:func:`default_target_name`).

    Returns
    -------
    dict
        ``{name: mix}``; each mix is finite, non-negative and sums to 1.
    """
    if isinstance(targets, str):
        return resolve_targets([targets], states)
    if isinstance(targets, pd.DataFrame):
        return _named({str(k): row for k, row in targets.iterrows()}, states)
    if isinstance(targets, pd.Series) or (isinstance(targets, Mapping) and _is_one_mix(targets)):
        q = _one_mix(targets, states, context="target")
        return {default_target_name(q, states): q}
    if isinstance(targets, Mapping):
        if not targets:
            raise InputError("no targets given; pass e.g. {'progenitor': 0.6, 'cycling': 0.4}")
        return _named(targets, states)
    if isinstance(targets, list | tuple) and targets and all(isinstance(t, str) for t in targets):
        return resolve_targets(list(targets), states)
    arr = np.asarray(targets, dtype=object)
    if arr.ndim == 2:
        out: dict[str, np.ndarray] = {}
        for row in arr:
            q = _one_mix(row, states, context="target")
            out[unique_name(default_target_name(q, states), out)] = q
        if not out:
            raise InputError("no targets given; pass e.g. {'progenitor': 0.6, 'cycling': 0.4}")
        return out
    q = _one_mix(targets, states, context="target")
    return {default_target_name(q, states): q}


def _is_one_mix(mapping: Mapping) -> bool:
    """Tell a mapping of scalars (state -> fraction) from one of targets (name -> mix)."""
    return bool(mapping) and all(isinstance(v, int | float | np.number) for v in mapping.values())


def _named(items: Mapping, states: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in items.items():
        if isinstance(value, str):
            mix = resolve_targets([value], states)
            out[str(name)] = next(iter(mix.values()))
        else:
            out[str(name)] = _one_mix(value, states, context=f"target {str(name)!r}")
    return out


def _one_mix(value: object, states: Sequence[str], *, context: str) -> np.ndarray:
    """One target: a state -> fraction mapping/Series, or a ``(C,)`` array in ``states`` order."""
    if isinstance(value, pd.Series) and not pd.api.types.is_integer_dtype(value.index):
        return mix_from_mapping(value.to_dict(), states, context=context)
    if isinstance(value, Mapping):
        return mix_from_mapping(value, states, context=context)
    try:
        q = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{context} could not be read as a state mix ({err}); pass {{'state': fraction}}") from err
    if q.shape != (len(states),):
        raise InputError(
            f"{context} has shape {q.shape}; give one fraction per state in the order {list(states)}, or a "
            "mapping {'state': fraction} (states left out are 0)"
        )
    if not np.isfinite(q).all() or (q < 0).any() or q.sum() <= 0:
        raise InputError(f"{context} = {q.tolist()} must be finite, >= 0 and not all zero")
    return q / q.sum()


def challenge_objective(proportions: np.ndarray, states: Sequence[str] = CHALLENGE_STATES) -> np.ndarray:
    """Return the challenge's objective ``a/0.0675 + b/0.2097 - c/0.3134 + d/0.3921`` (higher is better).

    Parameters
    ----------
    proportions
        ``(n, C)`` or ``(C,)`` state proportions, columns in ``states`` order.
    states
        State names; must include progenitor, effector, terminal exhausted and cycling.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` scores (a scalar array for one mix). The control mix scores 1 + 1 - 1 + 1 = 2.
    """
    p = np.asarray(proportions, dtype=np.float64)
    ctrl = dict(zip(CHALLENGE_STATES, CHALLENGE_CONTROL_MIX, strict=True))
    terms = {"progenitor": 1.0, "effector": 1.0, "terminal exhausted": -1.0, "cycling": 1.0}
    score = np.zeros(p.shape[:-1])
    for state, sign in terms.items():
        i = _state_index(state, states, context="challenge_objective")
        score = score + sign * p[..., i] / ctrl[state]
    return score
