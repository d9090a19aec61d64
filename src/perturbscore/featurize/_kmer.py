"""Built-in featuriser: a k-mer spectrum per window, vectorised over windows and genes.

Each sequence is encoded once to 2-bit codes and rolling k-mer codes are formed for its whole span.
Window ``w`` differs from window ``w - 1`` only by the k-mers entering on the right and leaving on
the left, so one weighted ``bincount`` of those +1/-1 changes followed by a cumulative sum over
windows gives all 200 overlapping spectra for about the cost of two passes over the 6,880 bp,
for a block of genes at once.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

from .._errors import InputError
from ._fasta import N_WINDOWS, STRIDE, WINDOW, central_span, span

logger = logging.getLogger(__name__)

TRANSFORMS = ("frequency", "log1p", "counts")
_MAX_K = 6  # 4**6 = 4,096 features per window already makes 3 MB per gene
_N = 4  # code of N (and anything not ACGT)
_LUT = np.full(256, _N, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _LUT[_b] = _i
    _LUT[ord(chr(_b).lower())] = _i
_CHUNK_CELLS = 4_000_000  # bincount cells (genes x windows x dim) per block, ~32 MB of float64


def encode(seq: str) -> np.ndarray:
    """Encode a DNA string as uint8 codes A=0, C=1, G=2, T=3, anything else (N) = 4."""
    return _LUT[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]


def kmer_names(k: int, *, canonical: bool = False) -> list[str]:
    """Names of the feature columns, in order (``AAAA, AAAC, ...``; canonical: the smaller of k-mer/rev-comp)."""
    _check_k(k)
    names = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    if not canonical:
        return names
    _, cols = _canonical_columns(k)
    return [names[c] for c in cols]


def n_features(k: int, *, canonical: bool = False) -> int:
    """Feature dimension: ``4**k``, or the number of canonical k-mers (``(4**k + 4**(k//2)) / 2`` for even k)."""
    _check_k(k)
    return len(_canonical_columns(k)[1]) if canonical else 4**k


def _check_k(k: int) -> None:
    if int(k) != k or not 1 <= k <= _MAX_K:
        raise InputError(f"k-mer size k must be an integer from 1 to {_MAX_K}, got {k!r}; k=4 gives 256 features.")


def _canonical_columns(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Map every k-mer code to its canonical column; also return the canonical codes (sorted)."""
    _check_k(k)
    codes = np.arange(4**k, dtype=np.int64)
    rc = np.zeros_like(codes)
    rest = codes.copy()
    for _ in range(k):  # read digits from the right, complement (3 - d), write from the left
        rc = rc * 4 + (3 - rest % 4)
        rest //= 4
    canon = np.minimum(codes, rc)
    cols, column_of = np.unique(canon, return_inverse=True)
    return column_of, cols


def kmer_codes(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return rolling k-mer codes for every start position.

    Parameters
    ----------
    codes
        ``(..., L)`` uint8 nucleotide codes from :func:`encode`.
    k
        k-mer size.

    Returns
    -------
    ``(..., L - k + 1)`` int32 k-mer codes in ``[0, 4**k)`` and a boolean mask of those without N.
    """
    n_pos = codes.shape[-1] - k + 1
    kmer = np.zeros((*codes.shape[:-1], n_pos), dtype=np.int32)
    has_n = np.zeros(kmer.shape, dtype=bool)
    for j in range(k):
        part = codes[..., j : j + n_pos]  # (..., L - k + 1)
        kmer = (kmer << 2) | (part & 3)
        has_n |= part == _N
    return kmer, ~has_n


def kmer_spectrum(
    sequences: Sequence[str],
    *,
    k: int = 4,
    canonical: bool = False,
    transform: str = "frequency",
    n_windows: int = N_WINDOWS,
    window: int = WINDOW,
    stride: int = STRIDE,
) -> np.ndarray:
    """k-mer spectrum of each window of each sequence.

    Parameters
    ----------
    sequences
        DNA strings (upper case ``ACGTN``), each at least ``window + (n_windows - 1) * stride`` bp;
        the windows are centred on each sequence.
    k
        k-mer size (``4**k`` features).
    canonical
        Merge each k-mer with its reverse complement (136 features for k=4).
    transform
        ``"frequency"``: counts divided by the window's number of N-free k-mers (rows sum to 1,
        all-N windows are all zero); ``"log1p"``: ``log1p`` of the counts; ``"counts"``: raw counts.
    n_windows, window, stride
        Window layout (default 200 windows of 512 bp at stride 32).

    Returns
    -------
    ``(n_sequences, n_windows, dim)`` float32. k-mers containing N are not counted.
    """
    _check_k(k)
    if window < k:
        raise InputError(f"window ({window} bp) must be at least k ({k}).")
    if transform not in TRANSFORMS:
        raise InputError(f"unknown k-mer transform {transform!r}; choose one of {', '.join(TRANSFORMS)}.")
    span(n_windows=n_windows, size=window, stride=stride)  # validates the layout
    plan = _delta_plan(n_windows=n_windows, window=window, stride=stride, k=k)
    column_of = _canonical_columns(k)[0] if canonical else None
    dim = n_features(k, canonical=canonical)
    out = np.empty((len(sequences), n_windows, dim), dtype=np.float32)
    chunk = max(1, _CHUNK_CELLS // (n_windows * dim))
    for c0 in range(0, len(sequences), chunk):
        block = sequences[c0 : c0 + chunk]
        codes = np.stack(
            [encode(central_span(s, n_windows=n_windows, size=window, stride=stride)) for s in block]
        )  # (B, span)
        _window_counts(codes, k, plan, column_of, out[c0 : c0 + len(block)])
    return _transform(out, transform)


def _delta_plan(*, n_windows: int, window: int, stride: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the k-mer start positions whose counts change from window ``w - 1`` to window ``w``.

    Returns ``(positions, window_index, sign)``: window 0 adds all of its k-mers; each later window
    adds those entering on the right (+1) and drops those leaving on the left (-1).
    """
    starts = stride * np.arange(n_windows, dtype=np.int64)  # first k-mer start of each window, within the span
    ends = starts + window - k + 1  # exclusive end of each window's k-mer starts
    pos, win, sign = [np.arange(ends[0])], [np.zeros(ends[0], dtype=np.int64)], [np.ones(ends[0])]
    for w in range(1, n_windows):
        enter = np.arange(max(starts[w], ends[w - 1]), ends[w])
        leave = np.arange(starts[w - 1], min(starts[w], ends[w - 1]))
        pos += [enter, leave]
        win += [np.full(enter.size, w), np.full(leave.size, w)]
        sign += [np.ones(enter.size), -np.ones(leave.size)]
    return np.concatenate(pos), np.concatenate(win), np.concatenate(sign)


def _window_counts(
    codes: np.ndarray,
    k: int,
    plan: tuple[np.ndarray, np.ndarray, np.ndarray],
    column_of: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """Write per-window k-mer counts of a block of equal-length encoded spans into ``out`` (B, n_windows, dim)."""
    pos, win, sign = plan
    n_genes, n_windows, dim = out.shape
    kmer, valid = kmer_codes(codes, k)  # (B, S)
    if column_of is not None:
        kmer = column_of[kmer]
    kmer, valid = kmer[:, pos], valid[:, pos]  # (B, E) the changes
    itype = np.int32 if n_genes * n_windows * dim < 2**31 else np.int64  # int32 halves the index traffic
    flat = ((np.arange(n_genes)[:, None] * n_windows + win[None, :]) * dim).astype(itype) + kmer  # (B, E)
    weights = np.broadcast_to(sign, flat.shape)
    if not valid.all():  # k-mers with N are not counted
        flat, weights = flat[valid], weights[valid]
    delta = np.bincount(flat.ravel(), weights=weights.ravel(), minlength=n_genes * n_windows * dim)
    out[...] = delta.reshape(n_genes, n_windows, dim)  # (B, n_windows, dim) changes, exact in float32
    for w in range(1, n_windows):  # cumulate over windows; a row loop is far faster than np.cumsum(axis=1)
        np.add(out[:, w - 1], out[:, w], out=out[:, w])


def _transform(counts: np.ndarray, transform: str) -> np.ndarray:
    if transform == "counts":
        return counts
    if transform == "log1p":
        return np.log1p(counts, out=counts)
    totals = counts.sum(axis=-1, keepdims=True)  # (G, n_windows, 1)
    np.divide(counts, totals, out=counts, where=totals > 0)  # all-N windows stay all zero
    return counts
