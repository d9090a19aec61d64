"""Targets: parsing, renormalisation, files, presets, the challenge objective and constraints."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from perturbscore._constants import CHALLENGE_CONTROL_MIX, CHALLENGE_STATES
from perturbscore._errors import InputError
from perturbscore.io import (
    TARGET_PRESETS,
    challenge_objective,
    parse_constraint,
    parse_target,
    read_targets,
    resolve_targets,
)

S = CHALLENGE_STATES


def test_parse_target_order_and_missing_states():
    q = parse_target("effector=0.2, progenitor=0.5,cycling=0.3", S)
    np.testing.assert_allclose(q, [0.5, 0.2, 0.0, 0.3, 0.0])


@pytest.mark.parametrize("name", ["terminal_exhausted", "Terminal Exhausted", "TERMINAL-exhausted"])
def test_state_names_case_and_underscores(name):
    np.testing.assert_allclose(parse_target(f"{name}=1", S), [0, 0, 1, 0, 0])


def test_renormalised_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        q = parse_target("progenitor=2,effector=2", S)
    np.testing.assert_allclose(q, [0.5, 0.5, 0, 0, 0])
    assert "renormalised" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        parse_target("progenitor=0.5,effector=0.5", S)
    assert caplog.text == ""


def test_unknown_state_lists_valid():
    with pytest.raises(InputError, match=r"unknown state 'naive'.*'progenitor', 'effector'"):
        parse_target("naive=1", S)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("progenitor=-0.1,effector=1", r"'progenitor'.*finite and >= 0"),
        ("progenitor=nan", r"finite and >= 0"),
        ("progenitor=inf", r"finite and >= 0"),
        ("progenitor=0,effector=0", r"all zero"),
        ("progenitor=abc", r"'abc'.*not a number"),
        ("progenitor", r"cannot parse 'progenitor'.*state=fraction"),
        ("progenitor=0.5,Progenitor=0.5", r"given twice"),
        ("", r"is empty"),
    ],
)
def test_bad_targets(text, match):
    with pytest.raises(InputError, match=match):
        parse_target(text, S)


def test_read_targets_csv_tsv(tmp_path):
    table = pd.DataFrame({"name": ["a", "b"], "progenitor": [1.0, 0.2], "terminal_exhausted": [0.0, 0.8]})
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    for f in ("t.csv", "t.tsv"):
        got = read_targets(tmp_path / f, S)
        assert list(got) == ["a", "b"]
        np.testing.assert_allclose(got["b"], [0.2, 0, 0.8, 0, 0])


def test_read_targets_yaml_json(tmp_path):
    (tmp_path / "t.yaml").write_text("keep_stem:\n  progenitor: 0.7\n  cycling: 0.3\n")
    (tmp_path / "t.json").write_text(json.dumps({"keep_stem": {"progenitor": 0.7, "cycling": 0.3}}))
    for f in ("t.yaml", "t.json"):
        np.testing.assert_allclose(read_targets(tmp_path / f, S)["keep_stem"], [0.7, 0, 0, 0.3, 0])


def test_read_targets_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_targets(tmp_path / "none.yaml", S)
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n")
    with pytest.raises(InputError, match=r"must map each target name to \{state: fraction\}"):
        read_targets(tmp_path / "bad.yaml", S)
    (tmp_path / "unsafe.yaml").write_text("a: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(InputError, match="could not be parsed"):
        read_targets(tmp_path / "unsafe.yaml", S)
    (tmp_path / "t.yaml").write_text("a:\n  naive: 1\n")
    with pytest.raises(InputError, match=r"unknown state 'naive' in 'a' of"):
        read_targets(tmp_path / "t.yaml", S)
    (tmp_path / "t.txt").write_text("")
    with pytest.raises(InputError, match="unknown suffix"):
        read_targets(tmp_path / "t.txt", S)


def test_presets():
    got = resolve_targets(["progenitor", "control"], S)
    np.testing.assert_allclose(got["progenitor"], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(got["control"], np.array(CHALLENGE_CONTROL_MIX) / sum(CHALLENGE_CONTROL_MIX))
    assert TARGET_PRESETS["progenitor"].constraints == ("cycling>=0.05",)
    with pytest.raises(InputError, match=r"not a single target mix.*challenge_objective"):
        resolve_targets(["challenge-objective"], S)
    with pytest.raises(InputError, match=r"neither state=fraction pairs nor a preset; presets: progenitor"):
        resolve_targets(["stemness"], S)


def test_preset_against_other_state_order():
    order = tuple(reversed(S))
    np.testing.assert_allclose(resolve_targets(["progenitor"], order)["progenitor"], [0, 0, 0, 0, 1])


def test_resolve_named_and_bare():
    got = resolve_targets(["stem:progenitor=1", "effector=1", "cycling=1"], S)
    assert list(got) == ["stem", "effector 100%", "cycling 100%"]  # unnamed: after their dominant states
    np.testing.assert_allclose(got["cycling 100%"], [0, 0, 0, 1, 0])
    with pytest.raises(InputError, match="'x' is used twice"):
        resolve_targets(["x:progenitor=1", "x:effector=1"], S)


def test_challenge_objective():
    control = np.array(CHALLENGE_CONTROL_MIX)
    assert challenge_objective(control) == pytest.approx(2.0)
    p = np.array([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0.5, 0, 0, 0.5, 0]])
    np.testing.assert_allclose(challenge_objective(p), [1 / 0.0675, -1 / 0.3134, 0.5 / 0.0675 + 0.5 / 0.3921])
    np.testing.assert_allclose(challenge_objective(p[:, ::-1], states=S[::-1]), challenge_objective(p))
    with pytest.raises(InputError, match="unknown state 'progenitor'"):
        challenge_objective(p, states=("a", "b", "c", "d", "e"))


@pytest.mark.parametrize(
    ("text", "mask"),
    [
        ("cycling>=0.05", [True, True, False]),
        ("cycling > 0.05", [False, True, False]),
        ("Cycling<=0.05", [True, False, True]),
        ("cycling<0.05", [False, False, True]),
    ],
)
def test_constraints(text, mask):
    p = np.array([[0.9, 0, 0, 0.05, 0.05], [0.5, 0, 0, 0.5, 0], [1, 0, 0, 0, 0]])
    c = parse_constraint(text, S)
    assert c.state == "cycling"
    assert c.holds(p).tolist() == mask


def test_constraint_errors():
    assert str(parse_constraint("terminal_exhausted<0.3", S)) == "terminal exhausted<0.3"
    with pytest.raises(InputError, match="cannot parse constraint 'cycling=0.05'"):
        parse_constraint("cycling=0.05", S)
    with pytest.raises(InputError, match="unknown state 'naive' in constraint"):
        parse_constraint("naive>=0.1", S)
    with pytest.raises(InputError, match=r"must be a proportion in \[0, 1\]"):
        parse_constraint("cycling>=5", S)
    with pytest.raises(InputError, match="'x' in constraint .* not a number"):
        parse_constraint("cycling>=x", S)
