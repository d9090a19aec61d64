"""Bounds on a state's share (``cycling>=0.05``): parsed against a screen's states and checked on mixes."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._errors import InputError
from ._targets import _percent, _state_index

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

    def describe(self) -> str:
        """Say the bound in words, e.g. ``"cycling share at least 5%"``."""
        words = {">=": "at least", "<=": "at most", ">": "above", "<": "below"}[self.op]
        return f"{self.state} share {words} {_percent(self.value)}"


def parse_constraint(text: str, states: Sequence[str]) -> Constraint:
    """Parse ``"cycling>=0.05"`` (ops ``>=``, ``<=``, ``>``, ``<``) against ``states``."""
    m = re.fullmatch(r"\s*([^<>=]+?)\s*(>=|<=|>|<)\s*([^<>=]+?)\s*", text)
    if m is None:
        raise InputError(
            f"cannot parse constraint {text!r}; write state>=value, e.g. 'cycling>=0.05' (quote it on the command "
            "line: the shell reads > as a redirection)."
        )
    name, op, raw = m.groups()
    i = _state_index(name, states, context=f"constraint {text!r}")
    try:
        value = float(raw)
    except ValueError as err:
        raise InputError(f"value {raw!r} in constraint {text!r} is not a number.") from err
    if not 0.0 <= value <= 1.0:
        raise InputError(f"value {value:g} in constraint {text!r} must be a proportion in [0, 1].")
    return Constraint(states[i], op, value, i)
