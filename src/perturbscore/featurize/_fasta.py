"""Read TSS-centred FASTA sequences, validate them, and cut them into overlapping windows."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._errors import InputError

logger = logging.getLogger(__name__)

N_WINDOWS = 200
WINDOW = 512
STRIDE = 32
_ALLOWED = b"ACGTN"
_SHOW = 5  # how many offending genes an error message lists


def span(*, n_windows: int = N_WINDOWS, size: int = WINDOW, stride: int = STRIDE) -> int:
    """Return the number of base pairs covered by ``n_windows`` windows of ``size`` bp at ``stride`` (6,880 by default)."""
    _check_geometry(n_windows=n_windows, size=size, stride=stride)
    return size + (n_windows - 1) * stride


def _check_geometry(*, n_windows: int, size: int, stride: int) -> None:
    for name, value in (("n_windows", n_windows), ("window", size), ("stride", stride)):
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}.")


def _open_text(path: Path):
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="ascii", errors="replace")
    return path.open("r", encoding="ascii", errors="replace")


def read_fasta(path: str | os.PathLike[str], *, min_length: int | None = None) -> dict[str, str]:
    """Read a FASTA file (plain or gzip) of TSS-centred sequences, one record per gene.

    Parameters
    ----------
    path
        FASTA file; each header's first whitespace-separated token is the gene symbol. Records may
        span several lines; sequences are upper-cased (soft-masked lowercase is accepted).
    min_length
        Shortest allowed sequence; defaults to the span of the default windows (6,880 bp).

    Returns
    -------
    Gene symbol -> upper-case sequence, in file order.

    Raises
    ------
    InputError
        The file is missing, empty or not FASTA; a gene appears twice; a sequence is too short or
        contains characters other than ``ACGTN``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"sequence file {path} does not exist; pass a FASTA file of TSS-centred sequences.")
    if path.is_dir():
        raise InputError(f"sequence file {path} is a directory; pass a FASTA file of TSS-centred sequences.")
    records: dict[str, list[str]] = {}
    duplicates: list[str] = []
    name: str | None = None
    try:
        with _open_text(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line or line.startswith(";"):
                    continue
                if line.startswith(">"):
                    tokens = line[1:].split()
                    if not tokens:
                        raise InputError(f"{path}, line {lineno}: FASTA header has no gene name; write '>GENE'.")
                    name = tokens[0]
                    if name in records:
                        duplicates.append(name)
                    records[name] = []
                elif name is None:
                    raise InputError(
                        f"{path} is not a FASTA file: line {lineno} comes before any '>GENE' header; "
                        "give one record per gene, each starting with a '>GENE' line."
                    )
                else:
                    records[name].append(line)
    except (OSError, EOFError) as err:  # truncated/corrupt gzip
        raise InputError(f"cannot read {path} as (gzipped) FASTA: {err}; check the file is complete.") from err
    if not records:
        raise InputError(f"sequence file {path} is empty: it has no '>GENE' records; write one record per gene.")
    if duplicates:
        dup = sorted(set(duplicates))
        raise InputError(
            f"{path}: duplicate gene names {_listing(dup)}; keep exactly one TSS-centred sequence per gene."
        )
    seqs = {gene: "".join(lines).upper() for gene, lines in records.items()}
    check_sequences(seqs, min_length=span() if min_length is None else min_length, source=str(path))
    logger.info("read %d sequences from %s", len(seqs), path)
    return seqs


def check_sequences(seqs: Mapping[str, str], *, min_length: int, source: str = "sequences") -> None:
    """Validate upper-case sequences: non-empty set, each ``>= min_length`` bp, only ``ACGTN``.

    Raises
    ------
    InputError
        Naming ``source``, the offending genes and the fix.
    """
    if not seqs:
        raise InputError(f"{source}: no sequences given; pass at least one gene's TSS-centred sequence.")
    short = [(g, len(s)) for g, s in seqs.items() if len(s) < min_length]
    if short:
        shown = ", ".join(f"{g} ({n:,} bp)" for g, n in short[:_SHOW])
        more = f" and {len(short) - _SHOW} more" if len(short) > _SHOW else ""
        raise InputError(
            f"{source}: {len(short)} sequence(s) shorter than {min_length:,} bp: {shown}{more}. Sequences must be "
            f"centred on the TSS and at least {min_length:,} bp long (windows x stride + window); "
            "extract longer flanks around each TSS."
        )
    table = np.ones(256, dtype=bool)
    table[np.frombuffer(_ALLOWED, dtype=np.uint8)] = False
    for gene, seq in seqs.items():
        try:
            raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
        bad = np.flatnonzero(table[raw])
        if bad.size:
            pos = int(bad[0])
            raise InputError(
                f"{source}: gene {gene} has invalid character {seq[pos]!r} at position {pos + 1:,} "
                f"({bad.size:,} invalid in all); sequences may contain only A, C, G, T and N: "
                "replace ambiguity codes and gaps with N."
            )


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more


def window_starts(length: int, *, n_windows: int = N_WINDOWS, size: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """Start positions of the windows, centred on a sequence of ``length`` bp.

    The windows cover ``span = size + (n_windows - 1) * stride`` bp; a longer sequence keeps its
    central span (the extra is split evenly, the odd base going to the right flank).

    Returns
    -------
    ``(n_windows,)`` int64 start offsets into the sequence.
    """
    total = span(n_windows=n_windows, size=size, stride=stride)
    if length < total:
        raise InputError(f"a sequence of {length:,} bp is shorter than the {total:,} bp the windows span.")
    offset = (length - total) // 2
    return offset + stride * np.arange(n_windows, dtype=np.int64)


def central_span(seq: str, *, n_windows: int = N_WINDOWS, size: int = WINDOW, stride: int = STRIDE) -> str:
    """Return the central ``span`` bp of ``seq`` that the windows cover."""
    total = span(n_windows=n_windows, size=size, stride=stride)
    start = int(window_starts(len(seq), n_windows=n_windows, size=size, stride=stride)[0])
    return seq[start : start + total]


def windows(seq: str, *, n_windows: int = N_WINDOWS, size: int = WINDOW, stride: int = STRIDE) -> list[str]:
    """Cut ``seq`` into ``n_windows`` overlapping windows of ``size`` bp at ``stride``, centred on the sequence."""
    starts = window_starts(len(seq), n_windows=n_windows, size=size, stride=stride)
    return [seq[s : s + size] for s in starts.tolist()]
