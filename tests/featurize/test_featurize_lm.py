"""Tests for the language-model featuriser, with a tiny randomly initialised BERT saved to a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from perturbscore._errors import InputError  # noqa: E402
from perturbscore.featurize import (  # noqa: E402
    embed_windows,
    featurize_sequences,
    load_language_model,
    windows,
)

HIDDEN = 16
SMALL = {"n_windows": 5, "window": 64, "stride": 16}  # span 128 bp


def random_seq(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A character-level tokenizer + 1-layer BERT (random weights, seeded), saved with save_pretrained."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "A", "C", "G", "T", "N"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per base
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)  # the test model's weights only; the library never seeds globally
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=600,
    )
    path = tmp_path_factory.mktemp("tiny_dna_lm")
    BertModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture
def seqs() -> dict[str, str]:
    rng = np.random.default_rng(0)
    return {"Tox2": random_seq(rng, 128), "Sox4": random_seq(rng, 150), "Ikzf2": random_seq(rng, 200)}


def test_lm_shapes_and_determinism(model_dir: Path, seqs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    feats = featurize_sequences(seqs, method="lm", model_path=model_dir, progress=False, batch_size=3, **SMALL)
    assert feats.values.shape == (3, 5, HIDDEN)
    assert feats.values.dtype == np.float32
    assert np.isfinite(feats.values).all()
    assert list(feats.genes) == list(seqs)
    assert feats.values.std(axis=1).min() > 0  # windows differ
    again = featurize_sequences(seqs, method="lm", model_path=model_dir, progress=False, batch_size=5, **SMALL)
    np.testing.assert_allclose(again.values, feats.values, rtol=1e-5, atol=1e-6)  # batching does not matter
    assert "HF_HUB_OFFLINE" not in os.environ  # offline variables are scoped to the call


def test_lm_embedding_is_mean_over_sequence_tokens(model_dir: Path, seqs: dict[str, str]) -> None:
    lm = load_language_model(model_dir)
    wins = windows(seqs["Sox4"], **{"n_windows": 5, "size": 64, "stride": 16})
    emb = embed_windows(lm, wins[:2], batch_size=2)
    ids = lm.tokenizer(wins[1], return_tensors="pt")["input_ids"]
    assert ids.shape[1] == 64 + 2  # [CLS] + one token per base + [SEP]
    with torch.no_grad():
        hidden = lm.model(input_ids=ids).last_hidden_state[0]  # (tokens, hidden)
    np.testing.assert_allclose(emb[1], hidden[1:-1].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    # padding and special tokens are excluded: a short string padded in a batch embeds as it does alone
    both = embed_windows(lm, ["ACGTAC", wins[0]], batch_size=2)
    alone = embed_windows(lm, ["ACGTAC"], batch_size=1)
    np.testing.assert_allclose(both[0], alone[0], rtol=1e-4, atol=1e-5)


def test_lm_default_layout_on_one_gene(model_dir: Path) -> None:
    seq = random_seq(np.random.default_rng(1), 6880)
    feats = featurize_sequences({"Tox2": seq}, method="lm", model_path=model_dir, progress=False, batch_size=50)
    assert feats.values.shape == (1, 200, HIDDEN)
    assert feats.shape == (200, HIDDEN)


def test_lm_errors(model_dir: Path, seqs: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"model path .*missing_model does not exist.*never downloaded"):
        load_language_model(tmp_path / "missing_model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty is not a Hugging Face model folder \(no config.json\)"):
        load_language_model(tmp_path / "empty")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available here; pass --device cpu"):
            load_language_model(model_dir, device="cuda")
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        load_language_model(model_dir, device="gpu0")
    long_seq = {"Long": random_seq(np.random.default_rng(2), 800)}
    with pytest.raises(InputError, match="tokenises to 702 tokens but the model .* accepts at most 600"):
        featurize_sequences(long_seq, method="lm", model_path=model_dir, progress=False, n_windows=2, window=700)
    lm = load_language_model(model_dir)
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        embed_windows(lm, ["ACGT"], batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lm_cuda_matches_cpu(model_dir: Path, seqs: dict[str, str]) -> None:
    cpu = featurize_sequences(seqs, method="lm", model_path=model_dir, progress=False, **SMALL)
    gpu = featurize_sequences(seqs, method="lm", model_path=model_dir, progress=False, device="cuda", **SMALL)
    np.testing.assert_allclose(gpu.values, cpu.values, rtol=1e-3, atol=1e-4)


def test_cli_featurize_lm(model_dir: Path, seqs: dict[str, str], tmp_path: Path) -> None:
    import perturbscore.cli._featurize  # noqa: F401  registers the command
    from perturbscore.cli._app import app

    fasta = tmp_path / "s.fa"
    fasta.write_text("".join(f">{g}\n{s}\n" for g, s in seqs.items()))
    out = tmp_path / "lm.npz"
    args = ["featurize", str(fasta), "--out", str(out), "--method", "lm", "--model", str(model_dir)]
    args += ["--n-windows", "5", "--window", "64", "--stride", "16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"3 genes x (5, {HIDDEN})" in result.output
    with np.load(out) as npz:
        assert set(npz.files) == set(seqs)
        assert npz["Tox2"].shape == (5, HIDDEN)
        assert npz["Tox2"].dtype == np.float32
