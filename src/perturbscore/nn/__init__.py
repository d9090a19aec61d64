"""Pure PyTorch modules of the learned statistic (no AnnData here).

=======  ========================================================================================
part     module
=======  ========================================================================================
``f``    :class:`ProgramEncoder`: genes to programs (linear map + tanh)
``G``    :class:`ProgramMixer`: self-attention over the programs
``H``    :class:`DistanceHead` (the seed's), :class:`StructuredDistanceHead` (the default's)
``T``    :class:`SequenceRecognizer`: the statistic from gene features
=======  ========================================================================================
"""

from ._config import ModelConfig
from ._frontend import FrontEnd
from ._head import DistanceHead, ProportionHead, StructuredDistanceHead
from ._mixer import ProgramMixer
from ._pooling import masked_mean, segment_mean
from ._programs import ProgramEncoder
from ._recognition import SequenceRecognizer
from ._softmax import cross_entropy, log_softmax, softmax
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
    "cross_entropy",
    "log_softmax",
    "masked_mean",
    "segment_mean",
    "softmax",
    "sparse_matmul",
]
