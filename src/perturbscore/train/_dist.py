"""Which process of a distributed run this is, read from the launcher's environment.

Lightning's own DDP launcher, ``torchrun`` and SLURM each start one process per device; every
process runs the whole command. Only rank 0 may write a run's files.
"""

from __future__ import annotations

import os


def global_rank() -> int:
    """Return this process's global rank (0 when not distributed).

    Reads ``RANK`` (torchrun), ``SLURM_PROCID`` (SLURM) or, for the processes Lightning's own launcher
    starts, ``NODE_RANK`` x ``LOCAL_WORLD_SIZE`` + ``LOCAL_RANK``, in that order. That launcher does not set
    ``LOCAL_WORLD_SIZE``; without it a node counts as one process, which still tells rank 0 from the rest.
    """
    env = os.environ
    for key in ("RANK", "SLURM_PROCID"):
        if env.get(key, "").isdigit():
            return int(env[key])
    if env.get("LOCAL_RANK", "").isdigit():
        local = int(env["LOCAL_RANK"])
        node = int(env["NODE_RANK"]) if env.get("NODE_RANK", "").isdigit() else 0
        per_node = int(env["LOCAL_WORLD_SIZE"]) if env.get("LOCAL_WORLD_SIZE", "").isdigit() else 1
        return node * per_node + local
    return 0


def is_main_process() -> bool:
    """Return whether this process is rank 0 (or the run is not distributed)."""
    return global_rank() == 0
