"""Which process of a distributed run this is, and whether this machine has the devices a run asks for.

Lightning's own DDP launcher, ``torchrun`` and SLURM each start one process per device; every
process runs the whole command. Only rank 0 may write a run's files.
"""

from __future__ import annotations

import os

from .._errors import InputError


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


def check_devices(accelerator: str, devices: int | str) -> None:
    """Refuse a GPU run on a machine where PyTorch sees no GPU, or more GPUs than it has, before any work.

    Lightning would fail only once the screen is read and the run directory made, with its own traceback.
    ``"auto"`` and ``"cpu"`` always pass; ``"gpu"`` is CUDA or Apple's MPS, as in Lightning.
    """
    if str(accelerator).lower() not in ("gpu", "cuda", "mps"):
        return
    import torch

    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = str(accelerator).lower() != "cuda" and torch.backends.mps.is_available()
    if n_cuda == 0 and not mps:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise InputError(
            f"accelerator={accelerator!r} (--accelerator {accelerator}) asks for a GPU, but PyTorch sees none on "
            f"this machine (PyTorch {torch.__version__}, {build}). Train on the CPU with accelerator='cpu' "
            "(--accelerator cpu), or install the PyTorch build for this machine's CUDA version."
        )
    if n_cuda and isinstance(devices, int) and devices > n_cuda:
        raise InputError(
            f"devices={devices} (--devices {devices}) asks for more GPUs than the {n_cuda} PyTorch sees on this "
            f"machine; pass devices={n_cuda} (--devices {n_cuda}) or fewer."
        )
