"""Stateful streaming operators sharing one interface (see ``edge.ops.base``)."""

from edge.ops.base import Snapshot, StreamOp
from edge.ops.chain import Chain, FrameAssembler
from edge.ops.epochs import EpochAggregator, EpochBuffer, SampleEpochs, StagedEpochs
from edge.ops.grid import GridResampler
from edge.ops.iir import SOSFilter
from edge.ops.resample import Resampler
from edge.ops.stft import SlidingSTFT

__all__ = [
    "Chain",
    "EpochAggregator",
    "EpochBuffer",
    "FrameAssembler",
    "GridResampler",
    "Resampler",
    "SOSFilter",
    "SampleEpochs",
    "SlidingSTFT",
    "Snapshot",
    "StagedEpochs",
    "StreamOp",
]
