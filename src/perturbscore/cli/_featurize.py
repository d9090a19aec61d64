"""``perturbscore featurize``: TSS-centred sequences (FASTA) -> per-gene window features (.npz)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from .._errors import RunError
from ._app import app


@app.command("featurize")
def featurize(
    sequences: Path = typer.Argument(..., help="FASTA (plain or .gz) of TSS-centred sequences, >= 6,880 bp each."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz: one (windows, dim) float32 array per gene."),
    method: str = typer.Option("kmer", "--method", help="'kmer' (built-in k-mer spectrum) or 'lm' (local model)."),
    k: int = typer.Option(4, "--k", help="k-mer size for --method kmer (4**k features per window)."),
    canonical: bool = typer.Option(False, "--canonical", help="Merge each k-mer with its reverse complement."),
    transform: str = typer.Option("frequency", "--transform", help="k-mer values: frequency, log1p or counts."),
    model: Path | None = typer.Option(None, "--model", help="Local Hugging Face model folder for --method lm."),
    device: str = typer.Option("cpu", "--device", help="Device for the language model: cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(32, "--batch-size", help="Windows per language-model forward pass."),
    n_windows: int = typer.Option(200, "--n-windows", help="Windows per gene."),
    window: int = typer.Option(512, "--window", help="Window length in bp."),
    stride: int = typer.Option(32, "--stride", help="Step between windows in bp."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model folder's own code."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Featurise TSS-centred DNA sequences into (windows, dim) arrays per gene."""
    from ..featurize import featurize_sequences, write_features

    if out.exists() and not overwrite:  # fail before the (possibly long) featurisation
        raise RunError(f"{out} already exists; pass --overwrite to replace it.")
    features = featurize_sequences(
        sequences,
        method=method,
        k=k,
        canonical=canonical,
        transform=transform,
        model_path=model,
        n_windows=n_windows,
        window=window,
        stride=stride,
        batch_size=batch_size,
        device=device,
        trust_remote_code=trust_remote_code,
        progress=True,
    )
    path = write_features(features, out, overwrite=overwrite)
    n_win, dim = features.shape
    Console().print(
        f"wrote {path}: {len(features.genes):,} genes x ({n_win}, {dim}) float32", highlight=False, soft_wrap=True
    )
