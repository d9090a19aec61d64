from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from perturbscore import __version__  # noqa: E402
from perturbscore._errors import RunError  # noqa: E402
from perturbscore.report import build_report, markdown_to_html  # noqa: E402

_VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"}


class _Checker(HTMLParser):
    """Collects tags, attributes and text; fails on unbalanced or misnested tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        self.ids.extend(v for k, v in attrs if k == "id" and v)
        if tag == "title":
            self._in_title = True
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack, f"</{tag}> without an open tag"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()
        self._in_title = False if tag == "title" else self._in_title

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def _png(path) -> None:
    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1, 2], [1, 0, 2])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=40)


EVAL_MD = """# Evaluation

Validation on **10** knockouts; see [the scores](#scores) and [docs](https://example.org/x).

| metric | model | empirical |
|:--|--:|--:|
| pred_mae_cells@10 | 0.081 | 0.095 |
| pred_mae_sequence | 0.120 | n/a |

- uses `k=10` cells
- *seeded*
"""


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"m1": 10, "m2": 10}, "seed": 0}))
    (run / "screen_summary.json").write_text(json.dumps({
        "source": "sim.h5ad", "n_cells": 2000, "n_genes": 500, "n_perturbations": 12, "control": "Unperturbed",
        "states": ["progenitor", "effector"], "cells_per_perturbation": {"min": 3, "median": 80, "max": 400},
        "features": "kmer",
    }))  # fmt: skip
    pd.DataFrame({"epoch": [0, 0, 1], "step": [10, 20, 30], "train_loss": [0.5, 0.4, 0.3],
                  "val_loss": [None, 0.45, 0.35]}).to_csv(run / "metrics.csv", index=False)  # fmt: skip
    (run / "eval.json").write_text(json.dumps({"pred_mae_cells": {"10": 0.081}, "rec_r2": 0.4}))
    (run / "eval.md").write_text(EVAL_MD)
    rows = [{"target": t, "gene": f"KO{i}", "source": "cells", "pred_distance": i / 40, "lo": 0.0, "hi": 1.0,
             "empirical_distance": i / 41, "rank": i + 1} for t in ("progenitor", "custom") for i in range(30)]  # fmt: skip
    pd.DataFrame(rows).to_csv(run / "scores.csv", index=False)
    pd.DataFrame({"program": ["program_0"] * 4, "sign": ["+", "+", "-", "-"], "rank": [1, 2, 1, 2],
                  "gene": ["Tox", "Pdcd1", "Tcf7", "Sell"], "loading": [0.9, 0.5, -0.8, -0.2]}).to_csv(
        run / "programs.csv", index=False)  # fmt: skip
    pd.DataFrame({"program": ["program_0"], "direction": ["+"], "set": ["EXHAUSTION <b>"], "method": ["preranked"],
                  "effect": [2.1], "p": [0.001], "q": [0.01]}).to_csv(run / "enrichment.csv", index=False)  # fmt: skip
    _png(run / "plots" / "pred_mae_vs_k.png")
    _png(run / "plots" / "program-state_heatmap.png")
    (run / "caveats.json").write_text(json.dumps(["the model does not beat the empirical baseline at k=25",
                                                  "<script>alert(1)</script>"]))  # fmt: skip
    return run


def test_full_report(run_dir):
    path = build_report(run_dir, title="My <run>")
    assert path == run_dir / "report.html"
    text = path.read_text()
    doc = _parse(text)
    assert doc.tags[0] == "html"
    assert "head" in doc.tags
    assert "body" in doc.tags
    assert doc.title == "My <run>"
    assert "&lt;run&gt;" in text
    assert "<run>" not in text
    for anchor in ("caveats", "screen", "evaluation", "training", "scores", "programs", "enrichment", "figures",
                   "config"):  # fmt: skip
        assert anchor in doc.ids
        assert f'href="#{anchor}"' in text  # table of contents
    assert "missing" not in doc.ids  # every file present: no "Not in this run" box
    assert __version__ in text
    # caveats: shown, escaped, and before every other section
    body = "".join(doc.text)
    assert "the model does not beat the empirical baseline at k=25" in body
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert text.index('id="caveats"') < text.index('id="screen"')
    # no external resources anywhere
    for _, key, value in doc.attrs:
        if key in ("src", "href"):
            assert not re.match(r"(?i)\s*(https?:)?//", value or ""), value
    assert "http://" not in text.replace("https://example.org/x", "")
    assert "<link" not in text
    assert "<script" not in text
    imgs = [v for tag, k, v in doc.attrs if tag == "img" and k == "src"]
    assert len(imgs) == 2
    assert all(v.startswith("data:image/png;base64,") for v in imgs)
    assert "Pred mae vs k" in body
    assert "Program state heatmap" in body
    # eval.md rendered as a real table with alignment; the external link is plain text, not an href
    assert "<td" in text
    assert "pred_mae_cells@10" in body
    assert "text-align:right" in text
    assert '<a href="#scores">the scores</a>' in text
    # scores: top 20 per target, in rank order
    assert "Target: progenitor" in body
    assert "Target: custom" in body
    assert body.count("KO19") == 2
    assert "KO20" not in body
    assert "Tox, Pdcd1" in body
    assert "Tcf7, Sell" in body
    assert "EXHAUSTION &lt;b&gt;" in text


def test_missing_files_give_notes_not_crash(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "scores.csv").write_text("target,gene,pred_distance,rank\nT,KO1,0.2,1\n")
    out = build_report(run, out=tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html"
    assert not (run / "report.html").exists()
    text = out.read_text()
    doc = _parse(text)
    assert "scores" in doc.ids
    assert "missing" in doc.ids
    assert "figures" not in doc.ids
    assert "caveats" not in doc.ids
    body = "".join(doc.text)
    assert "Not in this run" in body
    for name in ("caveats.json", "metrics.csv", "eval.md", "programs.csv", "enrichment.csv", "config.json"):
        assert name in body
    assert doc.title == "perturbscore run: bare"


def test_corrupt_files_get_error_notes(tmp_path):
    run = tmp_path / "bad"
    (run / "plots").mkdir(parents=True)
    (run / "config.json").write_text("{not json")
    (run / "caveats.json").write_text('{"a": 1}')
    (run / "plots" / "fake.png").write_text("not a png")
    text = build_report(run).read_text()
    _parse(text)
    assert "could not be built: JSONDecodeError" in text
    assert "caveats.json should hold a JSON list" in text
    assert "fake.png is not a PNG image" in text


def test_missing_run_dir(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        build_report(tmp_path / "nope")


def test_markdown_converter():
    html = markdown_to_html(
        "## Head\n\ntext with a_b_c and *it* and **bold** <x>\n\n1. one\n2. two\n\n```\n<code>\n```"
    )
    _parse(f"<div>{html}</div>")
    assert "<h2>Head</h2>" in html
    assert "a_b_c" in html
    assert "<em>it</em>" in html
    assert "<strong>bold</strong>" in html
    assert "&lt;x&gt;" in html
    assert "<ol><li>one</li><li>two</li></ol>" in html
    assert "<pre><code>&lt;code&gt;</code></pre>" in html
    assert markdown_to_html("# T", heading_offset=2) == "<h3>T</h3>"
    link = markdown_to_html("[x](javascript:alert(1)) [y](http://a.b)")
    assert "href" not in link
    assert "<span" in link


def _load_report_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "report_check.py"
    spec = importlib.util.spec_from_file_location("report_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_check_blank_detection_and_skip(tmp_path, monkeypatch, capsys):
    import matplotlib.image as mpimg
    import numpy as np

    rc = _load_report_check()
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
