"""ULW-SleepNet in numpy over the native kernel's packed weights: the reference the C kernel is
tested against, and ``--backend numpy`` for PSG (slower, no compiler needed).

Two precisions, one weight layout (``export/ulw_native.py`` documents it):
- fp32: the folded network, exactly as ``edge/native/ulw_sleepnet.c`` computes it.
- int8: the five pointwise convolutions with more than one input channel (73 % of the
  multiply-adds) run on integers. Their weights are int8 with one scale per output channel
  (fixed at export); their input, the depthwise output, is quantised to int8 with one scale per
  epoch, channel and layer (``max |d| / 127``, computed on the fly). The per-epoch scale is what
  makes int8 work for this network: EEG amplitude spans orders of magnitude between stages
  (N3 vs REM), so a static per-tensor scale leaves low-amplitude epochs a few quantisation
  levels. Depthwise k3, the stride-4 shortcuts, the first 1-channel pointwise and the head stay
  fp32 (cheap). Rounding is half away from zero, as in the kernel.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from edge.models.epoch_input import check_input

CHANNELS, SAMPLES, CLASSES = 4, 3000, 5
WIDTHS = (1, 8, 16, 32)
# (block, stage) of the int8 pointwise convolutions, in the order their scales are appended
INT8_STAGES = ((0, 1), (1, 0), (1, 1), (2, 0), (2, 1))
INT8_SCALES = sum(WIDTHS[b + 1] for b, _ in INT8_STAGES)


@dataclass
class Stage:
    dw: np.ndarray  # [3, cin]
    w: np.ndarray  # [cin, cout] (integer-valued in an int8 stage)
    b: np.ndarray  # [cout]
    w_scale: np.ndarray | None = None  # [cout] per output channel, int8 stages only


@dataclass
class Block:
    a: Stage
    b: Stage
    ws: np.ndarray  # shortcut [cin, cout] on x[::4]
    bs: np.ndarray


def weight_count(int8: bool = False) -> int:
    n = CHANNELS
    for ci, co in itertools.pairwise(WIDTHS):
        n += 3 * ci + ci * co + co + 3 * co + co * co + co + ci * co + co
    n += CLASSES * CHANNELS * WIDTHS[-1] + CLASSES
    return n + (INT8_SCALES if int8 else 0)


class PackedULW:
    """The packed weight array, cut into named parts."""

    def __init__(self, weights: np.ndarray, int8: bool = False) -> None:
        if weights.dtype != np.float32 or weights.shape != (weight_count(int8),):
            raise ValueError(
                f"{weights.dtype} {weights.shape} is not ULW-SleepNet's packed "
                f"{'int8' if int8 else 'fp32'} weights (float32 [{weight_count(int8)}])"
            )
        self.int8 = int8
        at = 0

        def take(*shape: int) -> np.ndarray:
            nonlocal at
            n = int(np.prod(shape))
            part = weights[at : at + n].reshape(shape)
            at += n
            return part

        self.input_scale = take(CHANNELS)
        self.blocks: list[Block] = []
        for ci, co in itertools.pairwise(WIDTHS):
            a = Stage(take(3, ci), take(ci, co), take(co))
            b = Stage(take(3, co), take(co, co), take(co))
            self.blocks.append(Block(a, b, take(ci, co), take(co)))
        self.head_w = take(CLASSES, CHANNELS * WIDTHS[-1])
        self.head_b = take(CLASSES)
        if int8:
            for blk, st in INT8_STAGES:
                stage = self.stage(blk, st)
                stage.w_scale = take(stage.w.shape[1])
                if np.any(np.abs(stage.w) > 127) or np.any(stage.w != np.rint(stage.w)):
                    raise ValueError(f"block {blk + 1} stage {st}: weights are not int8 values")

    def stage(self, block: int, index: int) -> Stage:
        """Stage ``index`` (0: a, 1: b) of block ``block`` (0-based), as INT8_STAGES names them."""
        return (self.blocks[block].a, self.blocks[block].b)[index]


def _depthwise(x: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """k3 'same' along time of x [R, L, C]."""
    d = x * dw[1]
    d[:, 1:] += x[:, :-1] * dw[0]
    d[:, :-1] += x[:, 1:] * dw[2]
    return d


def quantize_rows(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row of d [R, L, C]: integers (float32) and each row's scale [R]."""
    m = np.abs(d).max(axis=(1, 2))
    inv = np.where(m > 0, np.float32(127.0) / np.where(m > 0, m, 1), 0).astype(np.float32)
    q = np.trunc(d * inv[:, None, None] + np.copysign(np.float32(0.5), d))
    return np.clip(q, -127, 127), (m / np.float32(127.0)).astype(np.float32)


def _stage(x: np.ndarray, s: Stage) -> np.ndarray:
    """relu(maxpool2,ceil(pointwise(depthwise(x)))) for x [R, L, cin] → [R, ceil(L/2), cout];
    the pointwise on int8 where the stage has weight scales."""
    d = _depthwise(x, s.dw)
    if s.w_scale is not None:
        q, a_scale = quantize_rows(d)
        acc = np.matmul(q.astype(np.float64), s.w.astype(np.float64))  # exact integers
        y = (acc * (a_scale[:, None, None] * s.w_scale)).astype(np.float32) + s.b
    else:
        y = d @ s.w + s.b
    if y.shape[1] % 2:
        y = np.concatenate([y, y[:, -1:]], axis=1)
    return np.maximum(np.maximum(y[:, 0::2], y[:, 1::2]), 0)


def forward(p: PackedULW, epochs: np.ndarray) -> np.ndarray:
    """Logits [N, 5] for epochs [N, 4, 3000] (float32)."""
    n = len(epochs)
    x = (epochs * p.input_scale[None, :, None]).reshape(n * CHANNELS, SAMPLES, 1)
    for blk in p.blocks:
        mid = _stage(x, blk.a)
        y = _stage(mid, blk.b)
        x = y + (x[:, ::4] @ blk.ws + blk.bs)
    feat = x.mean(axis=1).reshape(n, CHANNELS * WIDTHS[-1])
    return (feat @ p.head_w.T + p.head_b).astype(np.float32)


class NumpyEpochModel:
    """The numpy reference behind the runner interface, in chunks of ``batch`` epochs."""

    def __init__(self, weights: np.ndarray, int8: bool = False, batch: int = 64) -> None:
        self.packed = PackedULW(weights, int8)
        self.shape = [CHANNELS, SAMPLES]
        self.batch = batch

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        epochs = check_input(epochs, self.shape)
        parts = [
            forward(self.packed, epochs[i : i + self.batch])
            for i in range(0, len(epochs), self.batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, CLASSES), np.float32)
