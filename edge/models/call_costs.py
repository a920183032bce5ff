"""What a step model's calls cost here, measured once, to pick how queued seconds are stepped.

A fleet's queued seconds can go through the model two ways: second t of every stream in one
batched ``step`` call (cost ≈ ``step_us + per_stream_us`` × streams per call), or each
stream's seconds through its own ``sequence`` call (onnxruntime's sequence graph costs the same
for 1 or 32 seconds, ~5 batch-1 steps; numpy's grows with the seconds). Which is cheaper
depends on the backend and on how the queues line up, so ``plan`` minimises the modelled cost
over "the j longest queues run as sequences, the rest share steps". Either way gives the same
logits (to float rounding), so a noisy measurement can only cost time, never change a stage.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass

import numpy as np

from edge.models.step_runner import StepModel, run_sequence

CHUNK = 32  # seconds per sequence call (the sequence graph's length)
_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → CallCosts


def _median_us(call, repeats: int = 7) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


@dataclass(frozen=True)
class CallCosts:
    step_us: float  # one ``step`` call carrying one stream
    per_stream_us: float  # each further stream in that call
    sequence_us: tuple[float, float]  # one stream's ``sequence`` call of 1 and of CHUNK seconds

    @classmethod
    def measure(cls, model: StepModel, width: int) -> CallCosts:
        """~10 ms of timed calls on zero inputs (a fresh state; nothing is kept)."""
        one, many = model.initial_state(1), model.initial_state(16)
        x1, x16 = np.zeros((1, width), np.float32), np.zeros((16, width), np.float32)
        step1 = _median_us(lambda: model.step(x1, *one))
        step16 = _median_us(lambda: model.step(x16, *many))
        seq1 = _median_us(lambda: run_sequence(model, x1, *one), 3)
        seq = _median_us(lambda: run_sequence(model, np.zeros((CHUNK, width), np.float32), *one), 3)
        return cls(step1, max(0.0, (step16 - step1) / 15), (seq1, max(seq1, seq)))

    @classmethod
    def of(cls, model: StepModel, width: int) -> CallCosts:
        """``measure`` once per loaded model (every session of a replay shares the result)."""
        costs = _MEASURED.get(model)
        if costs is None:
            costs = _MEASURED[model] = cls.measure(model, width)
        return costs

    def sequence(self, seconds: int) -> float:
        """Modelled cost of one stream's ``seconds`` through ``sequence``."""
        full, rest = divmod(seconds, CHUNK)
        first, chunk = self.sequence_us
        cost = full * chunk
        if rest:
            cost += first + (chunk - first) * (rest - 1) / (CHUNK - 1)
        return cost

    def plan(self, lengths: list[int]) -> int:
        """How many of the queues, longest first, should run as sequences (the rest step
        together): the j minimising Σ_(i ≤ j) sequence(m_i) + (step_us − per_stream_us) ·
        m_(j+1) + per_stream_us · Σ_(i > j) m_i, with ``lengths`` sorted longest first (the
        shared steps make m_(j+1) calls carrying Σ m_i stream-seconds)."""
        best_j, best = 0, math.inf
        seq_cost, rest = 0.0, float(sum(lengths))
        for j in range(len(lengths) + 1):
            longest_left = lengths[j] if j < len(lengths) else 0
            calls = (self.step_us - self.per_stream_us) * longest_left
            cost = seq_cost + calls + self.per_stream_us * rest
            if cost < best:
                best_j, best = j, cost
            if j < len(lengths):
                seq_cost += self.sequence(lengths[j])
                rest -= lengths[j]
        return best_j
