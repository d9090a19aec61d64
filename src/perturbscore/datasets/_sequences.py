"""TSS-centred DNA sequences with planted 8-mer motifs whose counts near the TSS carry the effect ``z``.

Motif ``m`` occurs ``Poisson(rate_m(z))`` times (at most :data:`MAX_PER_MOTIF`) at random
non-overlapping positions within :data:`CENTRAL_BP` of the TSS, with
``rate_m(z) = BASE_RATE * exp(GAIN * tanh(v_m . (z - mu)))``. Background bases are uniform with a
gene-specific GC content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_MOTIFS = 6
MOTIF_LEN = 8
BASE_RATE = 3.0
GAIN = 1.2
MAX_PER_MOTIF = 14
CENTRAL_BP = 640  # motifs go within this many bp of the TSS
WINDOW, STRIDE = 512, 32
_ALPHABET = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class MotifMap:
    """The planted motifs and how their rates read ``z``."""

    motifs: tuple[str, ...]
    loadings: np.ndarray  # (M, L)


def sequence_length(n_windows: int) -> int:
    """Length covered by ``n_windows`` windows of 512 bp at stride 32 (6,880 bp for 200)."""
    return WINDOW + (n_windows - 1) * STRIDE


def motif_counts(mmap: MotifMap, effects: np.ndarray, z_mean: np.ndarray) -> np.ndarray:
    """Return expected planted occurrences ``(n, M)`` for effects ``(n, L)``."""
    return BASE_RATE * np.exp(GAIN * np.tanh((effects - z_mean) @ mmap.loadings.T))


def simulate_sequences(
    genes: list[str],
    effects: np.ndarray,
    *,
    z_mean: np.ndarray,
    n_windows: int,
    rng: np.random.Generator,
) -> tuple[dict[str, str], MotifMap]:
    """One ACGT sequence per gene (TSS at the centre) with planted motifs; see module docstring."""
    mmap = MotifMap(_motifs(rng), rng.standard_normal((N_MOTIFS, effects.shape[1])) / np.sqrt(effects.shape[1]))
    length = sequence_length(n_windows)
    centre = length // 2
    lo = max(0, centre - CENTRAL_BP)
    n_slots = (min(length, centre + CENTRAL_BP) - lo) // MOTIF_LEN
    planted = np.minimum(rng.poisson(motif_counts(mmap, effects, z_mean)), MAX_PER_MOTIF)  # (n, M)
    motif_codes = np.array([[b"ACGT".index(ch.encode()) for ch in m] for m in mmap.motifs])  # (M, 8)
    out: dict[str, str] = {}
    for i, gene in enumerate(genes):
        gc = rng.uniform(0.38, 0.55)
        p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
        seq = rng.choice(4, size=length, p=p)
        which = np.repeat(np.arange(N_MOTIFS), planted[i])
        slots = rng.choice(n_slots, size=min(which.size, n_slots), replace=False)
        for m, slot in zip(which, slots, strict=False):
            start = lo + slot * MOTIF_LEN
            seq[start : start + MOTIF_LEN] = motif_codes[m]
        out[gene] = _ALPHABET[seq].tobytes().decode("ascii")
    return out, mmap


def count_motif(sequence: str, motif: str, *, start: int = 0, stop: int | None = None) -> int:
    """Occurrences (overlapping) of ``motif`` in ``sequence[start:stop]``."""
    region = sequence[start:stop]
    count, at = 0, region.find(motif)
    while at >= 0:
        count += 1
        at = region.find(motif, at + 1)
    return count


def _motifs(rng: np.random.Generator) -> tuple[str, ...]:
    """``N_MOTIFS`` distinct 8-mers without runs of 3 identical bases, none the reverse complement of another."""
    found: list[str] = []
    comp = str.maketrans("ACGT", "TGCA")
    while len(found) < N_MOTIFS:
        m = _ALPHABET[rng.integers(0, 4, MOTIF_LEN)].tobytes().decode("ascii")
        if any(b * 3 in m for b in "ACGT") or any(m in (f, f.translate(comp)[::-1]) for f in found):
            continue
        found.append(m)
    return tuple(found)
