"""Gene-set files in the GMT format (``name<TAB>description<TAB>gene1<TAB>gene2 ...``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._errors import InputError
from .._utils import write_text_atomic


def read_gmt(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read gene sets from a GMT file (``name<TAB>description<TAB>gene1<TAB>gene2 ...``, one set per line).

    Parameters
    ----------
    path
        The GMT file. Blank lines are skipped; duplicated genes within a set are kept once.

    Returns
    -------
    Mapping set name -> list of gene symbols, in file order.

    Raises
    ------
    InputError
        The file is missing or empty, a line has fewer than three tab-separated fields, a set has no
        genes, or a set name repeats.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"gene-set file {str(path)!r} does not exist; pass the path of a GMT file.")
    sets: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            where = f"{str(path)!r} line {lineno}"
            if len(fields) < 3 or not fields[0].strip():
                raise InputError(
                    f"{where} is not GMT: expected 'name<TAB>description<TAB>gene ...' (tab-separated), "
                    f"got {len(fields)} field(s). Fix the line or remove it."
                )
            name = fields[0].strip()
            genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not genes:
                raise InputError(f"{where}: gene set {name!r} has no genes; add genes or remove the line.")
            if name in sets:
                raise InputError(f"{where}: gene set {name!r} appears twice; give each set a unique name.")
            sets[name] = genes
    if not sets:
        raise InputError(f"gene-set file {str(path)!r} contains no gene sets; it must hold GMT lines.")
    return sets


def write_gmt(
    gene_sets: Mapping[str, Sequence[str]],
    path: str | os.PathLike[str],
    *,
    descriptions: Mapping[str, str] | None = None,
) -> Path:
    """Write gene sets to a GMT file atomically (the description field is ``na`` unless given).

    Parameters
    ----------
    gene_sets
        Mapping set name -> genes.
    path
        Output path.
    descriptions
        Optional set name -> description (GMT's second column).

    Returns
    -------
    The path written.
    """
    lines = []
    for name, genes in gene_sets.items():
        tokens = [str(name), *map(str, genes)]
        if any(("\t" in t or "\n" in t or "\r" in t or not t.strip()) for t in tokens):
            raise InputError(
                f"gene set {name!r} has an empty name/gene or one with a tab or newline; GMT cannot hold it."
            )
        if not genes:
            raise InputError(f"gene set {name!r} is empty; GMT sets need at least one gene.")
        lines.append("\t".join([tokens[0], (descriptions or {}).get(name, "na"), *tokens[1:]]))
    return write_text_atomic(path, "\n".join(lines) + "\n")
