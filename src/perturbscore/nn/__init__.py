"""Pure PyTorch modules of the learned statistic (no AnnData here).

| paper | class |
|---|---|
| f | :class:`ProgramEncoder` |
| G | :class:`ProgramMixer` |
| H | :class:`DistanceHead` (seed), :class:`StructuredDistanceHead` (default) |
| T | :class:`SequenceRecognizer` |
"""

from ._config import ModelConfig
from ._frontend import FrontEnd
from ._head import DistanceHead, ProportionHead, StructuredDistanceHead
from ._mixer import ProgramMixer
from ._pooling import masked_mean, segment_mean
from ._programs import ProgramEncoder
from ._recognition import SequenceRecognizer
from ._sparse import sparse_matmul
from ._statistic import PerturbationStatistic

__all__ = [
    "DistanceHead",
    "FrontEnd",
    "ModelConfig",
    "PerturbationStatistic",
    "ProgramEncoder",
    "ProgramMixer",
    "ProportionHead",
    "SequenceRecognizer",
    "StructuredDistanceHead",
    "masked_mean",
    "segment_mean",
    "sparse_matmul",
]
