"""Target state mixes ``Q``: parse, read from files, presets, and constraints on proportions.

A target is a mapping state -> fraction, e.g. ``"progenitor=0.6,effector=0.1"``; states left out are 0.
State names match case-insensitively, with ``_`` or ``-`` for spaces (``terminal_exhausted``).
A mix that does not sum to 1 is renormalised with a warning.
"""

from __future__ import annotations

import json
import logging
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def resolve_targets(specs: Sequence[str], states: Sequence[str]) -> dict[str, np.ndarray]:
    """Resolve CLI-style target specs into named ``(C,)`` mixes.

    Each spec is ``"name:state=f,..."``, a bare ``"state=f,..."`` (named ``target1``, ``target2``, ... by
    position), or a preset name from :data:`TARGET_PRESETS`.
    """
    out: dict[str, np.ndarray] = {}
    for i, spec in enumerate(specs, start=1):
        name, mix = _resolve_one(spec.strip(), states, default_name=f"target{i}")
        if name in out:
            raise InputError(f"target name {name!r} is used twice; give each target its own name (name:mix).")
        out[name] = mix
    return out


def _resolve_one(spec: str, states: Sequence[str], *, default_name: str) -> tuple[str, np.ndarray]:
    head, sep, rest = spec.partition(":")
    if sep and "=" not in head:
        return head.strip(), parse_target(rest, states)
    if "=" in spec:
        return default_name, parse_target(spec, states)
    preset = TARGET_PRESETS.get(spec.lower())
    if preset is None:
        raise InputError(
            f"target {spec!r} is neither state=fraction pairs nor a preset; presets: {', '.join(TARGET_PRESETS)}."
        )
    if preset.mix is None:
        raise InputError(f"preset {spec!r} is not a single target mix. {preset.description}")
    return preset.name, mix_from_mapping(preset.mix, states, context=f"preset {spec!r}")


def challenge_objective(proportions: np.ndarray, states: Sequence[str] = CHALLENGE_STATES) -> np.ndarray:
    """The challenge's objective ``a/0.0675 + b/0.2097 - c/0.3134 + d/0.3921`` (higher is better).

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


_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Constraint:
    """A bound on one state's proportion, e.g. ``cycling >= 0.05``."""

    state: str
    op: str
    value: float
    index: int = field(default=-1, compare=False)

    def holds(self, proportions: np.ndarray) -> np.ndarray:
        """Boolean mask ``(n,)``: which rows of ``(n, C)`` proportions satisfy the constraint."""
        p = np.atleast_2d(np.asarray(proportions, dtype=np.float64))  # (n, C)
        return _OPS[self.op](p[:, self.index], self.value)

    def __str__(self) -> str:
        return f"{self.state}{self.op}{self.value:g}"


def parse_constraint(text: str, states: Sequence[str]) -> Constraint:
    """Parse ``"cycling>=0.05"`` (ops ``>=``, ``<=``, ``>``, ``<``) against ``states``."""
    m = re.fullmatch(r"\s*([^<>=]+?)\s*(>=|<=|>|<)\s*([^<>=]+?)\s*", text)
    if m is None:
        raise InputError(f"cannot parse constraint {text!r}; write state>=value, e.g. 'cycling>=0.05'.")
    name, op, raw = m.groups()
    i = _state_index(name, states, context=f"constraint {text!r}")
    try:
        value = float(raw)
    except ValueError as err:
        raise InputError(f"value {raw!r} in constraint {text!r} is not a number.") from err
    if not 0.0 <= value <= 1.0:
        raise InputError(f"value {value:g} in constraint {text!r} must be a proportion in [0, 1].")
    return Constraint(states[i], op, value, i)
