"""The run report: sections in reading order, targets spelled out, caveats that are never empty when they should
not be, plain words, readable tables, a self-contained page; and the Chromium layout check of ``make report-check``."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from perturbscore import __version__  # noqa: E402
from perturbscore._errors import RunError  # noqa: E402
from perturbscore.report import build_report, derive_caveats, markdown_to_html, report_context  # noqa: E402
from perturbscore.tl import write_scores  # noqa: E402
from perturbscore.tl._score import _constraints_by_target, _long_table, _params  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STATES = ("progenitor", "effector", "terminal exhausted", "cycling", "other")
SECTION_ORDER = ["asked", "answer", "caveats", "quality", "programs", "diagnostics"]
_VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"}


class _Checker(HTMLParser):
    """Collects tags, attributes, ids, headings and text; fails on unbalanced or misnested tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.h2: list[str] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        self.ids.extend(v for k, v in attrs if k == "id" and v)
        if tag in ("title", "h2"):
            self._in = tag
            if tag == "h2":
                self.h2.append("")
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack, f"</{tag}> without an open tag"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in == "title":
            self.title += data
        elif self._in == "h2":
            self.h2[-1] += data


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def _png(path: Path, width: float = 2, height: float = 1.5) -> None:
    fig = Figure(figsize=(width, height))
    fig.add_subplot().plot([0, 1, 2], [1, 0, 2])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=40)


class _Model:
    states = STATES


def _scores(val: list[str]) -> pd.DataFrame:
    """Two targets (a preset with its constraint, an unnamed mix); 30 knockouts with cells, 5 genes from sequence."""
    names = ["progenitor", "progenitor 60% + cycling 40%"]
    Q = np.array([[1.0, 0, 0, 0, 0], [0.6, 0, 0, 0.4, 0]])
    cons = _constraints_by_target([], names, STATES, {"progenitor": ["cycling>=0.05"]})
    rng = np.random.default_rng(0)
    genes = [*val, *(f"KO{i}" for i in range(30 - len(val)))]
    pred = np.sort(rng.uniform(0.1, 0.8, size=(30, 2)), axis=0)
    mix = rng.dirichlet(np.ones(5), size=30)
    cells = {"genes": genes, "source": "cells", "pred": pred, "lo": pred - 0.05, "hi": pred + 0.05,
             "interval": "bootstrap (200 resamples)", "empirical": pred + 0.01, "n": np.arange(30) + 20, "mix": mix,
             "basis": mix}  # fmt: skip
    seq = {"genes": [f"Gm{i:05d}" for i in range(5)], "source": "sequence", "pred": np.full((5, 2), 0.528),
           "lo": None, "hi": None, "interval": "none (single model)", "n": np.zeros(5, int),
           "mix": rng.dirichlet(np.ones(5), size=5), "basis": rng.dirichlet(np.ones(5), size=5)}  # fmt: skip
    df = _long_table([cells, seq], names, Q, cons, STATES)
    df["trained_on"] = 1
    df["flag"] = np.where(df["source"] == "sequence", "not ranked: sequence path no better than the training mean", "")
    from perturbscore.tl._score import rank_rows

    df["rank"] = rank_rows(df)
    df.attrs["params"] = _params([_Model()], names, Q, cons, "filter", 200, None, 0, False)
    df.attrs["params"]["sequence"] = {
        "ranking": "unranked",
        "reason": "this run's evaluation found the sequence path no better than predicting the training mean for "
        "every gene (error 0.150 vs 0.100)",
        "verdict": {"model": "perturbscore", "model_mae": 0.15, "train_mean_mae": 0.1, "better": False},
    }
    return df


def _evaluation(val: list[str]) -> dict:
    return {
        "screen": {"source": "screen.h5ad", "n_cells": 2000, "n_perturbations": 17},
        "split": {"train": ["KO0", "KO1"], "val": val, "test": []},
        "seeds": [0],
        "ks": [2, 10],
        "eval_k": 10,
        "models": {"perturbscore": {"mae_cells": {"2": [0.3], "10": [0.08]}, "mae_sequence": [0.15],
                                    "spearman": [0.7], "top3": [1.0], "val_pred_loss": [0.07]}},
        "baselines": {
            "empirical": {"mae_cells": {"2": [0.25], "10": [0.1]}, "spearman": [0.5], "top3": [1.0]},
            "shrunk": {"mae_cells": {"2": [0.2], "10": [0.09]}, "spearman": [0.6], "top3": [1.0]},
            "train_mean": {"mae_sequence": [0.1], "spearman": [0.1], "top3": [1.0]},
            "ridge": {"mae_sequence": [0.12], "spearman": [0.2], "top3": [1.0]},
            "oracle": {"mae_sequence": [0.01], "spearman": [0.99], "top3": [1.0]},
        },
    }  # fmt: skip


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run of a 16-knockout screen validated on 2 knockouts, whose sequence path loses to the training mean."""
    run = tmp_path / "run1"
    run.mkdir()
    val = ["Tox", "Zeb2"]
    (run / "config.json").write_text(json.dumps({"train": {"seed": 0}, "model": {"n_programs": 10},
                                                 "split": {"train": ["KO0", "KO1"], "val": val, "test": []}}))  # fmt: skip
    (run / "screen_summary.json").write_text(json.dumps({
        "source": "sim.h5ad", "n_cells": 2000, "n_genes": 500, "n_perturbations": 17, "control": "Unperturbed",
        "states": list(STATES), "cells_per_perturbation": {"min": 3, "median": 80, "max": 400}, "features": [200, 8],
    }))  # fmt: skip
    pd.DataFrame({"epoch": [0, 1, 2], "step": [10, 20, 30], "train_pred_loss": [0.5, 0.4, 0.3],
                  "val_pred_loss": [0.6, 0.45, 0.35], **{f"train_extra_{i}": [1.0, 0.5, 0.2] for i in range(20)}}
                 ).to_csv(run / "metrics.csv", index=False)  # fmt: skip
    (run / "eval.json").write_text(json.dumps(_evaluation(val)))
    write_scores(_scores(val), run / "scores.csv")
    genes = ";".join(f"Gene{i}" for i in range(40))
    pd.DataFrame({"program": ["program_1"] * 4, "sign": ["+", "+", "-", "-"], "rank": [1, 2, 1, 2],
                  "gene": ["Tox", "Pdcd1", "Tcf7", "Sell"], "loading": [0.9, 0.5, -0.8, -0.2]}).to_csv(
        run / "programs.csv", index=False)  # fmt: skip
    pd.DataFrame({"program": ["program_1", "program_1"], "direction": ["+", "-"], "set": ["EXHAUSTION <b>", "MEMORY"],
                  "method": ["hypergeometric", "preranked"], "size": [40, 12], "overlap": [9, np.nan],
                  "effect": [2.1, -1.5], "es": [np.nan, -0.4], "p": [0.001, 0.01], "q": [0.01, 0.04],
                  "genes": [genes, "Tcf7;Sell"]}).to_csv(run / "enrichment.csv", index=False)  # fmt: skip
    _png(run / "plots" / "ranking_1.png")
    _png(run / "plots" / "mae_vs_k.png")
    _png(run / "plots" / "training_curves.png")
    _png(run / "plots" / "program_top_genes.png")
    (run / "caveats.json").write_text(json.dumps(["a hand-written caveat", "<script>alert(1)</script>"]))
    return run


def test_sections_in_reading_order_each_once(run_dir):
    text = build_report(run_dir, title="My <run>").read_text()
    doc = _parse(text)
    assert doc.title == "My <run>"
    assert "&lt;run&gt;" in text
    positions = [text.index(f'<section id="{s}"') for s in SECTION_ORDER]
    assert positions == sorted(positions)
    assert doc.h2 == ["What was asked", "The answer", "Caveats", "How good the model is", "Gene programs",
                      "Training diagnostics"]  # fmt: skip
    for anchor in SECTION_ORDER:
        assert f'href="#{anchor}"' in text  # contents
    assert __version__ in text


def test_what_was_asked_spells_out_every_target(run_dir):
    doc = _parse(build_report(run_dir).read_text())
    body = " ".join(" ".join(doc.text).split())
    assert "progenitor 100% (other states 0%)" in body
    assert "cycling share at least 5%" in body  # the preset's constraint, on its own target only
    assert "progenitor 60%, cycling 40% (other states 0%)" in body
    ctx = report_context(run_dir)
    rows = {r["cells"][0]["text"]: r["cells"][2]["text"] for r in ctx["asked"]["targets"]["rows"]}
    assert rows == {"progenitor": "cycling share at least 5%", "progenitor 60% + cycling 40%": "none"}


def test_the_answer_ranks_with_intervals_and_leaves_noise_unranked(run_dir):
    ctx = report_context(run_dir)
    first = ctx["answer"]["targets"][0]
    assert first["heading"] == "Target: progenitor"
    assert len(first["top"]) == 3
    assert "95% interval" in first["top"][0]["text"]
    labels = [c["label"] for c in first["table"]["columns"]]
    assert labels == ["Rank", "Gene", "Scored from", "Predicted distance", "95% interval", "Observed distance",
                      "Cells", "Predicted mix", "Meets constraint", "Used in training"]  # fmt: skip
    genes = [r["cells"][1]["text"] for r in first["table"]["rows"]]
    assert len(genes) == 20
    assert not any(g.startswith("Gm") for g in genes)  # flagged sequence rows are not ranked
    notes = " ".join(n["text"] for n in first["notes"])
    assert "5 genes scored from sequence alone are not ranked" in notes
    assert first["figures"]
    text = build_report(run_dir).read_text()
    assert 'class="table-wrap"' in text
    assert "white-space:nowrap;overflow-wrap:normal" in text  # numbers do not wrap; text columns do


def test_caveats_never_empty_on_a_small_validation_set_or_a_weak_sequence_path(run_dir):
    caveats = report_context(run_dir)["caveats"]
    text = " ".join(caveats)
    assert "only 2 held-out knockouts" in text
    assert "a top-3 hit rate is 1 for every method" in text
    assert "no better than giving every gene the average training knockout's mix (error 0.150 vs 0.100)" in text
    assert "contained the distance of the observed state labels in" in text  # interval coverage on held-out
    assert "a hand-written caveat" in text
    body = build_report(run_dir).read_text()
    assert "<script>" not in body
    assert "&lt;script&gt;" in body
    # without caveats.json, and without scores, the evaluation alone still yields them
    (run_dir / "caveats.json").unlink()
    (run_dir / "scores.csv").unlink()
    assert any("only 2 held-out knockouts" in c for c in report_context(run_dir)["caveats"])


def test_caveats_when_the_run_was_not_evaluated(run_dir):
    (run_dir / "eval.json").unlink()
    (run_dir / "caveats.json").unlink()
    caveats = report_context(run_dir)["caveats"]
    assert any("not compared with the baselines" in c for c in caveats)


def test_derive_caveats_small_validation_and_sequence():
    res = _evaluation(["Tox", "Zeb2"])
    out = derive_caveats(res)
    assert "only 2 held-out knockouts" in out[0]
    assert "average training knockout" in out[1]
    big = _evaluation([f"KO{i}" for i in range(25)])
    big["models"]["perturbscore"]["mae_sequence"] = [0.05]
    assert not any("held-out knockouts" in c or "average training" in c for c in derive_caveats(big))


def test_model_quality_is_one_plain_table(run_dir):
    ctx = report_context(run_dir)["quality"]
    rows = [r["cells"][0]["text"] for r in ctx["table"]["rows"]]
    assert rows == ["This model", "Observed state labels", "Observed labels, pulled towards the average",
                    "Average training knockout", "Ridge regression", "True mix (simulated screens only)"]  # fmt: skip
    bold = {r["cells"][0]["text"]: [c["bold"] for c in r["cells"][2:]] for r in ctx["table"]["rows"]}
    assert bold["This model"][0]  # lowest error with 10 cells
    assert bold["Average training knockout"][1]  # lowest sequence-only error (the oracle is never bold)
    assert not any(bold["True mix (simulated screens only)"])
    assert "2 held-out knockouts" in ctx["intro"]


def test_no_jargon_and_no_section_twice(run_dir):
    text = build_report(run_dir).read_text()
    body = " ".join(_parse(text).text)
    for word in ("seed's", "Section 3", "s(P)", "T(g)", "(L1)", "No caveats were recorded", "pred_mae"):
        assert word not in body, word
    h2 = _parse(text).h2
    assert len(h2) == len(set(h2))  # no section twice
    assert "Evaluation" not in h2


def test_programs_with_readable_enrichment(run_dir):
    ctx = report_context(run_dir)["programs"]
    assert ctx["top"]["rows"][0]["cells"][1]["text"] == "Tox, Pdcd1"
    enr = ctx["enrichment"]
    assert [c["label"] for c in enr["columns"]] == ["Program", "Weights", "Gene set", "Test", "q", "Genes driving it"]
    first = enr["rows"][0]["cells"]
    assert first[0]["text"] == "program 1"
    assert first[1]["text"] == "positive"
    assert first[5]["text"].startswith("Gene0, Gene1, Gene2")
    assert first[5]["text"].endswith("… (+30 more)")
    text = build_report(run_dir).read_text()
    assert "EXHAUSTION &lt;b&gt;" in text
    assert "<th>es</th>" not in text


def test_training_diagnostics_last_and_compact(run_dir):
    text = build_report(run_dir).read_text()
    diag = text[text.index('<section id="diagnostics"') :]
    assert "Training prediction loss" in diag
    assert diag.index("<details>") < diag.index("train_extra_0")  # the long list of logged values is folded
    assert text.index("train_extra_0") > text.index('<section id="programs"')


def test_self_contained(run_dir):
    text = build_report(run_dir).read_text()
    doc = _parse(text)
    for _, key, value in doc.attrs:
        if key in ("src", "href"):
            assert value.startswith(("#", "data:image/png;base64,")), value
    assert "<link" not in text
    assert "<script" not in text
    assert len([v for t, k, v in doc.attrs if t == "img" and k == "src"]) == 4


def test_missing_files_give_notes_not_crash(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "scores.csv").write_text("target,gene,source,pred_distance,rank\nT,KO1,cells,0.2,1\n")
    out = build_report(run, out=tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html"
    assert not (run / "report.html").exists()
    doc = _parse(out.read_text())
    body = " ".join(doc.text)
    assert "missing" in doc.ids
    assert "Not in this run" in body
    for name in ("eval.json", "metrics.csv", "programs.csv", "config.json"):
        assert name in body
    assert "caveats" in doc.ids  # always a section
    assert "not compared with the baselines" in body
    assert "mix not recorded" in body  # a table written without its description says so
    assert doc.title == "perturbscore run: bare"


def test_corrupt_files_get_error_notes(tmp_path):
    run = tmp_path / "bad"
    (run / "plots").mkdir(parents=True)
    (run / "config.json").write_text("{not json")
    (run / "caveats.json").write_text('{"a": 1}')
    (run / "plots" / "fake.png").write_text("not a png")
    text = build_report(run).read_text()
    _parse(text)
    assert "config.json could not be read (JSONDecodeError" in text
    assert "caveats.json should hold a JSON list" in text
    assert "plots/fake.png is not a PNG image" in text


def test_missing_run_dir(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        build_report(tmp_path / "nope")


def test_template_ships_with_the_package():
    template = files("perturbscore.report") / "templates" / "report.html.j2"
    assert template.is_file()
    assert "macro table(t)" in template.read_text()


def test_markdown_converter():
    html = markdown_to_html(
        "## Head\n\ntext with a_b_c and *it* and **bold** <x>\n\n1. one\n2. two\n\n```\n<code>\n```\n\n"
        "| a | b |\n|:--|--:|\n| 1 | 2 |"
    )
    _parse(f"<div>{html}</div>")
    assert "<h2>Head</h2>" in html
    assert "a_b_c" in html
    assert "<em>it</em>" in html
    assert "<strong>bold</strong>" in html
    assert "&lt;x&gt;" in html
    assert re.search(r"<ol>\s*<li>one</li>\s*<li>two</li>\s*</ol>", html)
    assert "<pre><code>&lt;code&gt;" in html
    assert '<table class="data">' in html
    assert 'style="text-align:right"' in html
    assert markdown_to_html("# T", heading_offset=2) == "<h3>T</h3>"
    link = markdown_to_html("[x](javascript:alert(1)) [y](http://a.b) [z](#scores)")
    assert 'href="http' not in link
    assert "javascript:" not in link.replace("[x](javascript:alert(1))", "")  # left as text, never a link
    assert '<span class="url">http://a.b</span>' in link
    assert '<a href="#scores">z</a>' in link


# -- the tools behind `make report-check` -----------------------------------------------------------------------
def _tool(name: str):
    path = ROOT / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_check_blank_detection_and_skip(tmp_path, monkeypatch, capsys):
    import matplotlib.image as mpimg

    rc = _tool("report_check")
    blank = tmp_path / "blank.png"
    mpimg.imsave(blank, np.ones((20, 30, 3)))
    assert rc.is_blank(blank)
    drawn = tmp_path / "drawn.png"
    _png(drawn)
    assert not rc.is_blank(drawn)
    page = tmp_path / "r.html"
    page.write_text("<html></html>")
    monkeypatch.setattr(rc, "find_chromium", lambda explicit=None: None)
    assert rc.main([str(page)]) == 0
    assert capsys.readouterr().out.strip() == "skipped: chromium not found"
    assert rc.main([str(page), "--chromium", "/no/such/chromium"]) == 2
    assert rc.main([str(tmp_path / "missing.html")]) == 2


def test_layout_problems_name_hidden_columns_and_sideways_scroll():
    layout = _tool("report_layout")
    ok = {"viewport": 1280, "page_scroll_width": 1280,
          "tables": [{"index": 0, "where": "The answer", "columns": 10, "box_scroll_width": 1100,
                      "box_client_width": 1100, "hidden": []}]}  # fmt: skip
    assert layout.problems(ok) == []
    bad = json.loads(json.dumps(ok))
    bad["tables"][0].update(box_scroll_width=1900, hidden=["Predicted mix", "Rank"])
    bad["page_scroll_width"] = 1500
    found = layout.problems(bad)
    assert any("page scrolls sideways" in p for p in found)
    assert any("1900 px wide but 1100 px are shown" in p for p in found)
    assert any("columns hidden at this width: Predicted mix, Rank" in p for p in found)


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(), reason="needs Chromium"
)


@needs_chromium
def test_report_layout_at_1280_px_in_chromium(run_dir, tmp_path, capsys):
    """The report's tables show every column at 1280 px; a page whose ranked table is too wide fails the check."""
    layout = _tool("report_layout")
    report = build_report(run_dir)
    assert layout.main([str(report), "--width", "1280", "--screenshot", str(tmp_path / "shot.png")]) == 0, capsys.readouterr().out  # fmt: skip
    assert "all visible" in capsys.readouterr().out
    assert (tmp_path / "shot.png").read_bytes().startswith(b"\x89PNG")
    # the layout the report used to have: unwrapped cells in a sideways-scrolling box hide the right columns
    text = report.read_text().replace("overflow-wrap:break-word}", "white-space:nowrap}", 1)
    text = text.replace("</style>", "table.data td{white-space:nowrap;min-width:14em}</style>", 1)
    wide = tmp_path / "wide.html"
    wide.write_text(text)
    assert layout.main([str(wide), "--width", "1280"]) == 1
    out = capsys.readouterr().out
    assert "FAIL at 1280 px" in out
    assert "The answer" in out
