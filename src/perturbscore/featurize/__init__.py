"""Sequence features for the recognition network: TSS-centred DNA -> ``(windows, dim)`` arrays per gene.

``featurize_sequences`` cuts each sequence's central 6,880 bp into 200 windows of 512 bp at stride
32 (the seed's layout) and describes every window by a k-mer spectrum (built in) or by a local DNA
language model's mean embedding; ``write_features`` saves them as an ``.npz`` with one key per gene.
"""

from __future__ import annotations

from ._api import METHODS, featurize_sequences, write_features
from ._fasta import check_sequences, read_fasta, span, window_starts, windows
from ._kmer import kmer_names, kmer_spectrum, n_features
from ._lm import LanguageModel, embed_windows, lm_embeddings, load_language_model

__all__ = [
    "METHODS",
    "LanguageModel",
    "check_sequences",
    "embed_windows",
    "featurize_sequences",
    "kmer_names",
    "kmer_spectrum",
    "lm_embeddings",
    "load_language_model",
    "n_features",
    "read_fasta",
    "span",
    "window_starts",
    "windows",
    "write_features",
]
