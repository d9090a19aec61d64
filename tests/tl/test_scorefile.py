"""Score files that say what they scored: each target's mix and constraints travel with the table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from perturbscore._errors import InputError, RunError
from perturbscore.tl import read_scores, sidecar_path, write_scores
from perturbscore.tl._score import _constraints_by_target, _long_table, _params

STATES = ("progenitor", "effector", "terminal exhausted", "cycling", "other")


class _Model:
    """What ``_params`` reads of a model."""

    states = STATES


def _scores() -> pd.DataFrame:
    """A two-target table as score_perturbations builds it: a preset with its constraint, an unnamed mix."""
    names = ["progenitor", "progenitor 60% + cycling 40%"]
    Q = np.array([[1.0, 0, 0, 0, 0], [0.6, 0, 0, 0.4, 0]])
    cons = _constraints_by_target([], names, STATES, {"progenitor": ["cycling>=0.05"]})
    part = {"genes": ["A", "B"], "source": "cells", "pred": np.array([[0.2, 0.3], [0.4, 0.1]]),
            "lo": None, "hi": None, "interval": "none", "n": np.array([30, 40]), "mix": None,
            "basis": np.array([[0.5, 0.1, 0.1, 0.2, 0.1], [0.5, 0.2, 0.2, 0.0, 0.1]])}  # fmt: skip
    df = _long_table([part], names, Q, cons, STATES)
    df["trained_on"] = 0
    df["flag"] = ""
    df["rank"] = pd.array([1, pd.NA, 1, 2], dtype="Int64")
    df.attrs["params"] = _params([_Model()], names, Q, cons, "filter", 0, None, 0, False)
    return df


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_score_file_read_back_alone_tells_each_targets_mix_and_constraint(tmp_path, suffix):
    df = _scores()
    path = write_scores(df, tmp_path / f"scores{suffix}")
    back = read_scores(path)
    targets = back.attrs["params"]["targets"]
    assert list(targets) == ["progenitor", "progenitor 60% + cycling 40%"]
    assert targets["progenitor"]["constraints"] == ["cycling>=0.05"]  # only the preset's own target
    assert targets["progenitor 60% + cycling 40%"]["constraints"] == []
    assert targets["progenitor 60% + cycling 40%"]["mix"] == {"progenitor": 0.6, "effector": 0.0,
                                                             "terminal exhausted": 0.0, "cycling": 0.4, "other": 0.0}  # fmt: skip
    assert targets["progenitor"]["description"] == "progenitor 100% (other states 0%)"
    assert back.attrs["columns"]["pred_distance"].startswith("predicted total-variation distance")
    assert back["rank"].dtype == "Int64"
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    if suffix == ".csv":
        assert json.loads(sidecar_path(path).read_text())["format"] == "perturbscore scores"
    else:
        assert not sidecar_path(path).exists()  # Parquet keeps its description inside


def test_a_csv_without_its_json_still_names_mix_and_constraint(tmp_path):
    path = write_scores(_scores(), tmp_path / "scores.csv")
    sidecar_path(path).unlink()
    raw = pd.read_csv(path)
    by_target = raw.groupby("target", sort=False)[["target_mix", "constraint"]].first()
    assert by_target.loc["progenitor", "target_mix"] == "progenitor=1"
    assert by_target.loc["progenitor", "constraint"] == "cycling>=0.05"
    assert by_target.loc["progenitor 60% + cycling 40%", "target_mix"] == "progenitor=0.6,cycling=0.4"
    assert by_target.loc["progenitor 60% + cycling 40%", "constraint"] == "none"
    assert read_scores(path).attrs["params"] == {}


def test_write_scores_refuses_what_it_should(tmp_path):
    df = _scores()
    with pytest.raises(InputError, match=r"write \.csv or \.parquet"):
        write_scores(df, tmp_path / "scores.txt")
    write_scores(df, tmp_path / "scores.csv")
    with pytest.raises(RunError, match="--overwrite"):
        write_scores(df, tmp_path / "scores.csv")
    (tmp_path / "scores.csv").unlink()
    with pytest.raises(RunError, match=r"scores\.json exists"):  # the description would be replaced
        write_scores(df, tmp_path / "scores.csv")
    write_scores(df, tmp_path / "scores.csv", overwrite=True)
    with pytest.raises(InputError, match="does not exist"):
        read_scores(tmp_path / "missing.csv")
