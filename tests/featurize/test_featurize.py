"""Tests for ``perturbscore.featurize``: FASTA reading, windows, k-mer spectra, the .npz file and the CLI."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from perturbscore._errors import InputError, RunError
from perturbscore.data import GeneFeatures
from perturbscore.featurize import (
    featurize_sequences,
    kmer_names,
    kmer_spectrum,
    n_features,
    read_fasta,
    span,
    window_starts,
    windows,
    write_features,
)

SPAN = 6880


def random_seq(rng: np.random.Generator, length: int, *, n_frac: float = 0.0) -> str:
    p = np.array([1, 1, 1, 1, 0.0]) * (1 - n_frac) / 4
    p[4] = n_frac
    return "".join(rng.choice(list("ACGTN"), size=length, p=p))


def write_fasta(path: Path, seqs: dict[str, str], *, width: int = 60) -> Path:
    lines = []
    for gene, seq in seqs.items():
        lines.append(f">{gene} some description")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    path.write_text("\n".join(lines) + "\n")
    return path


def brute_counts(seq: str, k: int, names: list[str]) -> np.ndarray:
    c = Counter(seq[i : i + k] for i in range(len(seq) - k + 1) if "N" not in seq[i : i + k])
    return np.array([c.get(name, 0) for name in names], dtype=float)


@pytest.fixture
def seqs() -> dict[str, str]:
    rng = np.random.default_rng(0)
    return {"Tox2": random_seq(rng, SPAN), "Sox4": random_seq(rng, SPAN + 300), "Ikzf2": random_seq(rng, 8001)}


# -- FASTA ---------------------------------------------------------------------------------------


def test_span_is_seed_layout() -> None:
    assert span() == 512 + 199 * 32 == SPAN


def test_read_fasta_multiline_lowercase_and_gzip(tmp_path: Path, seqs: dict[str, str]) -> None:
    mixed = {g: s[:100].lower() + s[100:] for g, s in seqs.items()}
    plain = write_fasta(tmp_path / "a.fa", mixed, width=70)
    got = read_fasta(plain)
    assert list(got) == list(seqs)  # header's first token, file order
    assert got == seqs  # upper-cased, lines joined
    gz = tmp_path / "a.fa.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_fasta(gz) == seqs


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("ACGT\n>g\nACGT\n", "not a FASTA file.*line 1"),
        (">\nACGT\n", "line 1.*no gene name"),
    ],
)
def test_read_fasta_bad_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.fa"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_fasta(path)


def test_read_fasta_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.fa does not exist.*FASTA"):
        read_fasta(tmp_path / "nope.fa")
    with pytest.raises(InputError, match="is a directory"):
        read_fasta(tmp_path)


def test_read_fasta_duplicates_named(tmp_path: Path, seqs: dict[str, str]) -> None:
    path = tmp_path / "dup.fa"
    path.write_text(f">Tox2\n{seqs['Tox2']}\n>Sox4\n{seqs['Sox4']}\n>Tox2 again\n{seqs['Tox2']}\n")
    with pytest.raises(InputError, match=r"dup\.fa: duplicate gene names Tox2;.*one TSS-centred sequence per gene"):
        read_fasta(path)


def test_read_fasta_short_sequences_named(tmp_path: Path, seqs: dict[str, str]) -> None:
    seqs = dict(seqs, Short=seqs["Tox2"][:5000], Tiny="ACGT")
    path = write_fasta(tmp_path / "short.fa", seqs)
    with pytest.raises(
        InputError, match=r"2 sequence\(s\) shorter than 6,880 bp: Short \(5,000 bp\), Tiny \(4 bp\).*TSS"
    ):
        read_fasta(path)


def test_read_fasta_invalid_character(tmp_path: Path, seqs: dict[str, str]) -> None:
    s = seqs["Sox4"]
    seqs = dict(seqs, Sox4=s[:1234] + "R" + s[1235:])
    path = write_fasta(tmp_path / "iupac.fa", seqs)
    with pytest.raises(
        InputError, match=r"iupac\.fa: gene Sox4 has invalid character 'R' at position 1,235.*A, C, G, T and N"
    ):
        read_fasta(path)


def test_windows_are_centred(seqs: dict[str, str]) -> None:
    starts = window_starts(SPAN + 300)
    assert starts[0] == 150
    assert np.all(np.diff(starts) == 32)
    assert starts[-1] + 512 == 150 + SPAN
    assert window_starts(SPAN + 1)[0] == 0  # odd extra base goes to the right flank
    wins = windows(seqs["Sox4"])
    assert len(wins) == 200
    assert all(len(w) == 512 for w in wins)
    assert wins[0] == seqs["Sox4"][150:662]
    assert wins[1] == seqs["Sox4"][182:694]
    with pytest.raises(InputError, match="shorter than the 6,880 bp"):
        window_starts(SPAN - 1)


# -- k-mer spectrum --------------------------------------------------------------------------------


def test_all_a_window_puts_all_mass_on_aaaa() -> None:
    rng = np.random.default_rng(1)
    seq = random_seq(rng, SPAN)
    seq = "A" * 512 + seq[512:]  # first window is all A
    x = kmer_spectrum([seq], k=4)
    assert x.shape == (1, 200, 256)
    assert x[0, 0, 0] == 1.0  # column 0 is AAAA
    assert x[0, 0, 1:].sum() == 0
    assert kmer_names(4)[0] == "AAAA"
    np.testing.assert_allclose(x.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(("n_windows", "size", "stride", "k"), [(200, 512, 32, 4), (6, 20, 30, 3), (9, 10, 3, 2)])
def test_kmer_counts_match_brute_force(n_windows: int, size: int, stride: int, k: int) -> None:
    rng = np.random.default_rng(2)
    total = size + (n_windows - 1) * stride
    seqs = [random_seq(rng, total + extra, n_frac=0.05) for extra in (0, 7, 40)]
    x = kmer_spectrum(seqs, k=k, transform="counts", n_windows=n_windows, window=size, stride=stride)
    names = kmer_names(k)
    check = range(n_windows) if n_windows < 50 else [0, 1, 57, 198, 199]
    for g, seq in enumerate(seqs):
        wins = windows(seq, n_windows=n_windows, size=size, stride=stride)
        for w in check:
            np.testing.assert_array_equal(x[g, w], brute_counts(wins[w], k, names))


def test_n_containing_kmers_are_skipped() -> None:
    rng = np.random.default_rng(3)
    seq = random_seq(rng, SPAN)
    seq = seq[:100] + "N" + seq[101:512] + "N" * 512 + seq[1024:]
    counts = kmer_spectrum([seq], k=4, transform="counts")[0]
    assert counts[0].sum() == 509 - 4  # the N at position 100 removes the 4 k-mers that overlap it
    assert counts[16].sum() == 0  # window 16 (bp 512..1023) is all N
    freq = kmer_spectrum([seq], k=4)[0]
    assert np.all(freq[16] == 0)  # an all-N window has no spectrum rather than NaN
    assert np.isfinite(freq).all()


def test_canonical_merges_reverse_complements() -> None:
    rng = np.random.default_rng(4)
    seqs = [random_seq(rng, SPAN, n_frac=0.01) for _ in range(2)]
    assert n_features(4, canonical=True) == 136
    full = kmer_spectrum(seqs, k=4, transform="counts")
    canon = kmer_spectrum(seqs, k=4, canonical=True, transform="counts")
    assert canon.shape == (2, 200, 136)
    names = kmer_names(4)
    comp = str.maketrans("ACGT", "TGCA")
    for j, name in enumerate(kmer_names(4, canonical=True)):
        rc = name.translate(comp)[::-1]
        expected = full[..., names.index(name)] + (full[..., names.index(rc)] if rc != name else 0)
        np.testing.assert_array_equal(canon[..., j], expected)
    t_only = kmer_spectrum(["T" * SPAN], k=4, canonical=True)
    assert t_only[0, 0, 0] == 1.0  # TTTT counts as AAAA


def test_transforms_and_determinism() -> None:
    rng = np.random.default_rng(5)
    seqs = [random_seq(rng, SPAN) for _ in range(3)]
    counts = kmer_spectrum(seqs, k=3, transform="counts")
    np.testing.assert_allclose(kmer_spectrum(seqs, k=3, transform="log1p"), np.log1p(counts), rtol=1e-6)
    np.testing.assert_allclose(kmer_spectrum(seqs, k=3), counts / counts.sum(-1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(kmer_spectrum(seqs, k=3), kmer_spectrum(seqs, k=3))
    assert kmer_spectrum(seqs, k=3).dtype == np.float32


def test_kmer_argument_errors() -> None:
    with pytest.raises(InputError, match="k-mer size k must be an integer from 1 to 6"):
        kmer_spectrum(["A" * SPAN], k=9)
    with pytest.raises(InputError, match="unknown k-mer transform 'tfidf'"):
        kmer_spectrum(["A" * SPAN], transform="tfidf")
    with pytest.raises(InputError, match="stride must be a positive integer"):
        kmer_spectrum(["A" * SPAN], stride=0)


# -- API and file ----------------------------------------------------------------------------------


def test_featurize_sequences_dict_and_fasta(tmp_path: Path, seqs: dict[str, str]) -> None:
    feats = featurize_sequences(seqs, progress=False)
    assert isinstance(feats, GeneFeatures)
    assert list(feats.genes) == list(seqs)
    assert feats.values.shape == (3, 200, 256)
    assert feats.values.dtype == np.float32
    assert feats.shape == (200, 256)
    path = write_fasta(tmp_path / "s.fa", seqs)
    from_file = featurize_sequences(path, progress=False)
    np.testing.assert_array_equal(from_file.values, feats.values)
    assert str(path) in from_file.source
    small = featurize_sequences(seqs, k=2, canonical=True, n_windows=10, window=64, stride=16, progress=False)
    assert small.values.shape == (3, 10, 10)


def test_featurize_sequences_errors(seqs: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown featurisation method 'bert'"):
        featurize_sequences(seqs, method="bert")
    with pytest.raises(InputError, match="pass --model PATH"):
        featurize_sequences(seqs, method="lm")
    with pytest.raises(InputError, match="k-mer size k must be"):  # argument errors come before reading the file
        featurize_sequences(tmp_path / "not_read.fa", k=0)
    with pytest.raises(InputError, match=r"model path .*absent does not exist"):
        featurize_sequences(seqs, method="lm", model_path=tmp_path / "absent")
    with pytest.raises(InputError, match=r"Bad \(10 bp\)"):
        featurize_sequences({"Bad": "ACGTACGTAC"})
    with pytest.raises(InputError, match="gene X has invalid character '-' at position 3"):
        featurize_sequences({"X": "AC-" + "A" * SPAN})
    with pytest.raises(InputError, match="no sequences given"):
        featurize_sequences({})
    assert featurize_sequences({"lower": "acgt" * 1720}, k=1).values[0, 0].tolist() == [0.25] * 4


def test_write_features_round_trip_and_overwrite(tmp_path: Path, seqs: dict[str, str]) -> None:
    feats = featurize_sequences(seqs, k=3, progress=False)
    feats = GeneFeatures(genes=[*feats.genes[:2], "file"], values=feats.values)  # a name np.savez would choke on
    out = tmp_path / "sub" / "features.npz"
    assert write_features(feats, out) == out
    with np.load(out) as npz:
        assert sorted(npz.files) == sorted(feats.genes.tolist())
        for gene, arr in zip(feats.genes, feats.values, strict=True):
            assert npz[gene].dtype == np.float32
            assert npz[gene].shape == (200, 64)
            np.testing.assert_array_equal(npz[gene], arr)
    before = out.read_bytes()
    with pytest.raises(RunError, match=r"features\.npz already exists; pass --overwrite"):
        write_features(feats, out)
    assert out.read_bytes() == before
    other = GeneFeatures(genes=["Only"], values=np.ones((1, 200, 64), dtype=np.float32))
    write_features(other, out, overwrite=True)
    with np.load(out) as npz:
        assert npz.files == ["Only"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["features.npz"]  # no temp files left
    with pytest.raises(RunError, match="is a directory; give a file name"):
        write_features(other, tmp_path, overwrite=True)
    with pytest.raises(InputError, match="no genes to write"):
        write_features(GeneFeatures(genes=[], values=np.zeros((0, 200, 4))), tmp_path / "none.npz")


# -- CLI -------------------------------------------------------------------------------------------


def cli_app():
    import perturbscore.cli._featurize  # noqa: F401  registers the command
    from perturbscore.cli._app import app

    return app


def test_cli_featurize(tmp_path: Path, seqs: dict[str, str]) -> None:
    app = cli_app()
    fasta = write_fasta(tmp_path / "s.fa", seqs)
    out = tmp_path / "f.npz"
    runner = CliRunner()
    result = runner.invoke(app, ["featurize", str(fasta), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "f.npz" in result.output
    assert "3 genes x (200, 256)" in result.output
    with np.load(out) as npz:
        assert set(npz.files) == set(seqs)
        np.testing.assert_array_equal(npz["Sox4"], featurize_sequences(seqs, progress=False).get(["Sox4"])[0])
    again = runner.invoke(app, ["featurize", str(fasta), "--out", str(out), "--k", "2", "--canonical"])
    assert isinstance(again.exception, RunError)
    assert "--overwrite" in str(again.exception)
    ok = runner.invoke(app, ["featurize", str(fasta), "--out", str(out), "--k", "2", "--canonical", "--overwrite"])
    assert ok.exit_code == 0, ok.output
    assert "(200, 10)" in ok.output
    bad = runner.invoke(app, ["featurize", str(fasta), "--out", str(tmp_path / "g.npz"), "--method", "lm"])
    assert isinstance(bad.exception, InputError)
    assert "--model" in str(bad.exception)
    assert not (tmp_path / "g.npz").exists()
