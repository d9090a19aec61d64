"""Label-only inputs: proportions from labels and the real challenge counts table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perturbscore
from perturbscore._constants import CHALLENGE_CONTROL_MIX, CHALLENGE_STATES
from perturbscore._errors import InputError
from perturbscore.io import proportions_from_labels, read_state_counts_table

CSV = Path(perturbscore.__file__).parent / "datasets" / "challenge_cells_per_ko.csv"


def test_challenge_counts_table():
    t = read_state_counts_table(CSV)
    assert list(t.columns) == list(CHALLENGE_STATES)
    assert t.index.name == "condition"
    assert t.dtypes.unique().tolist() == [np.dtype(np.int64)]
    assert len(t) == 67
    knockouts = t.drop(index="Unperturbed")
    assert len(knockouts) == 66
    assert knockouts.to_numpy().sum() == 23_719
    assert t.loc["Unperturbed"].sum() == 4_978
    control = t.loc["Unperturbed"] / t.loc["Unperturbed"].sum()
    np.testing.assert_allclose(control.round(4).to_numpy(), CHALLENGE_CONTROL_MIX)
    totals = knockouts.sum(axis=1)
    assert (totals.min(), np.median(totals), totals.max()) == (1, 136.5, 4_333)
    assert t.loc["Tox2"].tolist() == [75, 247, 1594, 2300, 117]


def test_counts_table_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_state_counts_table(tmp_path / "none.csv")
    pd.DataFrame({"condition": ["A"], "progenitor": [1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=r"lacks column\(s\) \['effector'"):
        read_state_counts_table(tmp_path / "t.csv")
    pd.DataFrame({"condition": ["A"], "x": [1.5], "y": [1]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(InputError, match="non-negative integers"):
        read_state_counts_table(tmp_path / "u.csv", states=("x", "y"))


def test_proportions_from_labels():
    perts = ["B", "A", "Ctrl", "A", "B", "B"]
    states = ["s1", "s2", "s1", "s1", "s1", "s2"]
    df = proportions_from_labels(perts, states, ["s2", "s1", "s3"], control="Ctrl")
    assert list(df.index) == ["A", "B", "Ctrl"]
    assert list(df.columns) == ["s2", "s1", "s3"]
    np.testing.assert_allclose(df.loc["B"], [1 / 3, 2 / 3, 0])
    np.testing.assert_allclose(df.sum(axis=1), 1)


def test_proportions_from_labels_errors():
    with pytest.raises(InputError, match=r"cell states \['s9'\] are not in the state order"):
        proportions_from_labels(["A"], ["s9"], ["s1"])
    with pytest.raises(InputError, match="2 perturbation labels but 1 state labels"):
        proportions_from_labels(["A", "B"], ["s1"], ["s1"])
