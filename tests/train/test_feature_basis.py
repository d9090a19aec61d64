"""Training fits T's feature basis on every gene with features (cells or not), and the saved model keeps it."""

from __future__ import annotations

import pytest

from perturbscore.tl import PerturbScoreModel, fit


@pytest.mark.parametrize("basis", [True, False])
def test_training_fits_the_basis_on_every_gene_with_features(screen_with_unseen, tmp_path, basis: bool) -> None:
    screen = screen_with_unseen
    assert len(screen.features.genes) == 48  # 8 knockouts + 40 genes without cells, all kept by read_screen
    model = fit(screen, out=tmp_path / "run", max_steps=4, progress=False, threads=1, feature_basis=basis)
    rec = model.net.recognizer
    assert rec.has_basis is basis
    assert int(rec.basis_genes) == (48 if basis else 0)
    loaded = PerturbScoreModel.load(tmp_path / "run" / "model")
    assert loaded.net.recognizer.has_basis is basis
    assert loaded.train_config.feature_basis is basis
