"""Window embeddings from a DNA language model the user has on disk (Hugging Face format, never downloaded)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from .._utils import track
from ._fasta import N_WINDOWS, STRIDE, WINDOW, windows

logger = logging.getLogger(__name__)

_OFFLINE_VARS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@contextlib.contextmanager
def offline_env() -> Iterator[None]:
    """Set the Hugging Face offline variables for the duration of the block, then restore them."""
    saved = {key: os.environ.get(key) for key in _OFFLINE_VARS}
    os.environ.update(_OFFLINE_VARS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class LanguageModel:
    """A loaded tokenizer + model pair and where the embeddings are computed."""

    tokenizer: Any
    model: Any
    device: Any
    path: Path


def resolve_device(device: str) -> Any:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a torch device, checking it is available."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"unknown device {device!r}; use 'cpu' or 'cuda' (or 'cuda:N').") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available here; pass --device cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} asked for but MPS is not available here; pass --device cpu.")
    return dev


def load_language_model(
    model_path: str | os.PathLike[str], *, device: str = "cpu", trust_remote_code: bool = False
) -> LanguageModel:
    """Load a DNA language model and its tokenizer from a local folder, offline.

    Parameters
    ----------
    model_path
        Folder written by ``save_pretrained`` (``config.json``, weights, tokenizer files).
    device
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    trust_remote_code
        Allow the model's own Python code in that folder to run (needed by some DNA models).

    Raises
    ------
    InputError
        The path does not exist, is not a model folder, or the model cannot be loaded.
    """
    path = Path(model_path).expanduser()
    if not path.exists():
        raise InputError(
            f"model path {path} does not exist; pass --model a local folder holding a Hugging Face model "
            "(models are never downloaded: fetch it first, e.g. with save_pretrained or huggingface-cli download)."
        )
    if not path.is_dir() or not (path / "config.json").exists():
        raise InputError(f"model path {path} is not a Hugging Face model folder (no config.json); pass the folder.")
    dev = resolve_device(device)
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    with offline_env():  # also while importing: huggingface_hub reads HF_HUB_OFFLINE at import time
        try:
            from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
        except ImportError as err:  # pragma: no cover - transformers is an optional extra
            raise InputError("the 'lm' method needs transformers: pip install 'perturbscore[lm]'.") from err
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            hint = _remote_hint(trust_remote_code=trust_remote_code)
            raise InputError(f"cannot load a tokenizer from {path}: {err}. {hint}") from err
        try:
            model = AutoModel.from_pretrained(path, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            logger.debug("AutoModel failed for %s (%s); trying AutoModelForMaskedLM", path, err)
            try:
                model = AutoModelForMaskedLM.from_pretrained(path, **kwargs)
                model.config.output_hidden_states = True  # an MLM head's output has no last_hidden_state
            except (OSError, ValueError, KeyError) as err2:
                raise InputError(
                    f"cannot load a model from {path}: {err2}. {_remote_hint(trust_remote_code=trust_remote_code)}"
                ) from err2
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval().to(dev)
    logger.info("loaded %s from %s on %s", type(model).__name__, path, dev)
    return LanguageModel(tokenizer=tokenizer, model=model, device=dev, path=path)


def _remote_hint(*, trust_remote_code: bool) -> str:
    if trust_remote_code:
        return "Check the folder holds a complete model saved with save_pretrained."
    return "If the model ships its own code, pass --trust-remote-code; else check the folder is complete."


def embed_windows(lm: LanguageModel, seqs: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
    """Mean last-hidden-state embedding of each DNA string, ignoring padding and special tokens.

    Returns
    -------
    ``(len(seqs), hidden)`` float32.
    """
    import torch

    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
    pad_ok = lm.tokenizer.pad_token is not None
    step = batch_size if pad_ok else 1  # without a pad token, windows go one by one (no padding needed)
    parts = []
    with torch.no_grad():
        for b0 in range(0, len(seqs), step):
            enc = lm.tokenizer(
                list(seqs[b0 : b0 + step]),
                return_tensors="pt",
                padding=pad_ok,
                return_special_tokens_mask=True,
            )
            _check_length(lm, enc["input_ids"].shape[1])
            special = enc.pop("special_tokens_mask", None)  # custom tokenizers may not return it
            enc = {key: value.to(lm.device) for key, value in enc.items() if key in ("input_ids", "attention_mask")}
            hidden = _last_hidden(lm.model(**enc))  # (b, tokens, hidden)
            mask = enc.get("attention_mask", torch.ones_like(enc["input_ids"])).bool()
            if special is not None:
                mask &= ~special.to(lm.device).bool()  # (b, tokens): real sequence tokens only
            if not bool(mask.any(dim=1).all()):
                raise InputError(f"the tokenizer at {lm.path} turned a window into special tokens only; check it.")
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # (b, tokens, 1)
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1)  # (b, hidden)
            parts.append(mean.float().cpu().numpy())
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def _last_hidden(output: Any) -> Any:
    last = getattr(output, "last_hidden_state", None)
    if last is not None:
        return last
    hidden_states = getattr(output, "hidden_states", None)
    if hidden_states:
        return hidden_states[-1]
    raise InputError("the model returned neither last_hidden_state nor hidden_states; use an encoder or MLM model.")


def _check_length(lm: LanguageModel, n_tokens: int) -> None:
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and n_tokens > limit:
        raise InputError(
            f"a window tokenises to {n_tokens} tokens but the model at {lm.path} accepts at most {limit}; "
            "pass a smaller --window or use a model with a longer context or k-mer tokens."
        )


def lm_embeddings(
    sequences: Sequence[str],
    lm: LanguageModel,
    *,
    n_windows: int = N_WINDOWS,
    window: int = WINDOW,
    stride: int = STRIDE,
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """Embed every window of every sequence: ``(n_sequences, n_windows, hidden)`` float32.

    Windows are cut with :func:`~perturbscore.featurize._fasta.windows` (centred on each sequence);
    each window's embedding is the mean of the model's last hidden state over its sequence tokens.
    """
    out: np.ndarray | None = None
    for i in track(range(len(sequences)), progress=progress, description="embedding genes", total=len(sequences)):
        wins = windows(sequences[i], n_windows=n_windows, size=window, stride=stride)
        emb = embed_windows(lm, wins, batch_size=batch_size)  # (n_windows, hidden)
        if out is None:
            out = np.empty((len(sequences), n_windows, emb.shape[1]), dtype=np.float32)  # (genes, windows, hidden)
        out[i] = emb
    if out is None:
        raise InputError("no sequences to embed; pass at least one gene's sequence.")
    return out
