"""Public API: TSS-centred sequences -> per-gene ``(windows, dim)`` feature arrays, and their ``.npz`` file."""

from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._errors import InputError, RunError
from .._utils import atomic_path
from ..data import GeneFeatures
from ._fasta import N_WINDOWS, STRIDE, WINDOW, check_sequences, read_fasta, span
from ._kmer import TRANSFORMS, kmer_spectrum, n_features
from ._lm import lm_embeddings, load_language_model

logger = logging.getLogger(__name__)

METHODS = ("kmer", "lm")


def featurize_sequences(
    sequences: Mapping[str, str] | str | os.PathLike[str],
    *,
    method: str = "kmer",
    k: int = 4,
    canonical: bool = False,
    transform: str = "frequency",
    model_path: str | os.PathLike[str] | None = None,
    n_windows: int = N_WINDOWS,
    window: int = WINDOW,
    stride: int = STRIDE,
    batch_size: int = 32,
    device: str = "cpu",
    trust_remote_code: bool = False,
    progress: bool = True,
) -> GeneFeatures:
    """Turn TSS-centred DNA sequences into per-gene arrays of window features.

    Each sequence's central ``window + (n_windows - 1) * stride`` bp (6,880 by default) is cut into
    ``n_windows`` windows of ``window`` bp at ``stride``, and every window becomes a vector.

    Parameters
    ----------
    sequences
        Gene symbol -> sequence, or a FASTA file (plain or gzip) with one record per gene.
    method
        ``"kmer"``: the built-in k-mer spectrum per window (``4**k`` dims); ``"lm"``: the mean last
        hidden state of a local DNA language model per window (``hidden`` dims).
    k, canonical, transform
        k-mer size, whether to merge reverse complements, and ``"frequency"`` / ``"log1p"`` /
        ``"counts"`` (``method="kmer"`` only).
    model_path
        Local folder of a Hugging Face-format model (``method="lm"``; never downloaded).
    n_windows, window, stride
        Window layout; the seed's is 200 windows of 512 bp at stride 32.
    batch_size
        Windows per forward pass of the language model.
    device
        ``"cpu"`` (default) or ``"cuda"`` for the language model.
    trust_remote_code
        Let the model folder's own code run (some DNA models need it).
    progress
        Show a progress bar over genes (language model).

    Returns
    -------
    :class:`~perturbscore.data.GeneFeatures` with ``values`` of shape ``(genes, n_windows, dim)``
    float32, genes in input order.

    Raises
    ------
    InputError
        Bad sequences (too short, not ``ACGTN``, duplicates), unknown method, missing model path.
    """
    if method not in METHODS:
        raise InputError(f"unknown featurisation method {method!r}; choose 'kmer' or 'lm'.")
    if method == "kmer":  # argument errors before any (possibly long) reading
        if transform not in TRANSFORMS:
            raise InputError(f"unknown k-mer transform {transform!r}; choose one of {', '.join(TRANSFORMS)}.")
        n_features(k, canonical=canonical)  # validates k
    elif model_path is None:
        raise InputError("method 'lm' needs a language model: pass --model PATH (a local Hugging Face folder).")
    total = span(n_windows=n_windows, size=window, stride=stride)
    if isinstance(sequences, Mapping):
        seqs = {str(gene): str(seq).upper() for gene, seq in sequences.items()}
        source = "sequences"
        check_sequences(seqs, min_length=total, source=source)
    else:
        source = str(sequences)
        seqs = read_fasta(sequences, min_length=total)
    genes, strings = list(seqs), list(seqs.values())
    t0 = time.perf_counter()
    if method == "kmer":
        values = kmer_spectrum(
            strings, k=k, canonical=canonical, transform=transform, n_windows=n_windows, window=window, stride=stride
        )
        label = f"kmer k={k}{' canonical' if canonical else ''} {transform}"
    else:
        assert model_path is not None  # checked above, before any reading
        lm = load_language_model(model_path, device=device, trust_remote_code=trust_remote_code)
        values = lm_embeddings(
            strings, lm, n_windows=n_windows, window=window, stride=stride, batch_size=batch_size, progress=progress
        )
        label = f"lm {lm.path}"
    logger.info(
        "featurised %d genes (%s) -> %s in %.1fs", len(genes), label, values.shape[1:], time.perf_counter() - t0
    )
    return GeneFeatures(genes=np.asarray(genes, dtype=str), values=values, source=f"{source} [{label}]")


def write_features(features: GeneFeatures, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write features as an ``.npz`` with one ``(windows, dim)`` float32 array per gene, atomically.

    The file reads back with ``np.load(path)[gene]``, the contract every feature reader uses.

    Parameters
    ----------
    features
        Features to write (``features.genes[i]`` -> ``features.values[i]``).
    path
        Output file (conventionally ``*.npz``).
    overwrite
        Replace an existing file; otherwise refuse.

    Raises
    ------
    RunError
        ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{path} is a directory; give a file name such as features.npz.")
    if path.exists() and not overwrite:
        raise RunError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it.")
    if len(features.genes) == 0:
        raise InputError("no genes to write; featurise at least one sequence.")
    with atomic_path(path) as tmp, tmp.open("wb") as fh, zipfile.ZipFile(fh, mode="w", allowZip64=True) as zf:
        # what np.savez writes, without its keyword names (a gene called 'file' would clash with savez's argument)
        for gene, arr in zip(features.genes.tolist(), features.values, strict=True):
            with zf.open(f"{gene}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    logger.info("wrote %d genes x %s to %s", len(features.genes), features.shape, path)
    return path
