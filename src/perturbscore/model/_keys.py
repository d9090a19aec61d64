"""Which ``obs`` keys, control label and layer to read a screen with, for a trained model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._constants import KEYS

if TYPE_CHECKING:
    from ._model import PerturbScoreModel


def read_keys(
    model: PerturbScoreModel | None,
    *,
    perturbation_key: str | None = None,
    state_key: str | None = None,
    control: str | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """Return the keys to read a screen with: those given, else the ones ``model`` was trained with, else the challenge layout's.

    Parameters
    ----------
    model
        A trained model (``None``: no model, the challenge layout's keys).
    perturbation_key, state_key, control, layer
        Keys given by the caller; ``None`` takes the model's.

    Returns
    -------
    ``{"perturbation_key", "state_key", "control", "layer"}``.
    """
    known = model.keys if model is not None else {}
    return {
        "perturbation_key": perturbation_key or known.get("perturbation_key") or KEYS.perturbation,
        "state_key": state_key or known.get("state_key") or KEYS.state,
        "control": control if control is not None else known.get("control", KEYS.control),
        "layer": layer if layer is not None else known.get("layer"),
    }
