"""Processing steps described as data (dicts from device descriptors) → operators.

Each step has a streaming operator and a batch reference with identical semantics, so a feature
chain written in a descriptor gets its reference for free. Steps track the sample rate they see.

Step kinds: ``bridge`` (max_gap in seconds, method: short gaps filled; first step only),
``resample`` (rate), ``bandpass``/``lowpass``/``highpass`` (low, high, order, init),
``stft`` (n_fft, hop, window, bins, eps), ``grid`` (period, method, max_gap; timestamped input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.ops.bridge import GapBridge, reference_bridge
from edge.ops.grid import GridResampler, reference_grid
from edge.ops.iir import SOSFilter, design_butter, reference_sosfilt
from edge.ops.resample import Resampler, reference_resample
from edge.ops.stft import SlidingSTFT, reference_stft

FILTERS = ("bandpass", "lowpass", "highpass")
KNOWN = {
    "bridge": {"max_gap", "method"},
    "resample": {"rate"},
    "bandpass": {"low", "high", "order", "init"},
    "lowpass": {"high", "order", "init"},
    "highpass": {"low", "order", "init"},
    "stft": {"n_fft", "hop", "window", "bins", "eps"},
    "grid": {"period", "method", "max_gap"},
}


@dataclass(frozen=True)
class Step:
    """A validated step with the rate it consumes and the rate it produces."""

    op: str
    params: Mapping[str, Any]
    rate_in: float
    rate_out: float

    def _sos(self) -> np.ndarray:
        p = self.params
        return design_butter(self.op, self.rate_in, p.get("low"), p.get("high"), p.get("order", 2))

    def _stft_args(self) -> tuple:
        p = self.params
        n_fft = p.get("n_fft", 100)
        return (
            n_fft,
            p.get("hop", n_fft),
            p.get("window", "hamming"),
            p.get("bins"),
            True,
            p.get("eps", 1e-8),
        )

    def _grid_args(self) -> tuple:
        p = self.params
        return p.get("period", 1.0), p.get("method", "linear"), p.get("max_gap")

    def _bridge_args(self) -> tuple[int, str]:
        p = self.params
        return int(round(p.get("max_gap", 0.5) * self.rate_in)), p.get("method", "linear")

    def build(self):
        """A fresh streaming operator for this step."""
        if self.op == "bridge":
            return GapBridge(*self._bridge_args())
        if self.op == "resample":
            return Resampler(self.rate_in, self.params["rate"])
        if self.op in FILTERS:
            return SOSFilter(self._sos(), init=self.params.get("init", "steady"))
        if self.op == "stft":
            return SlidingSTFT(*self._stft_args())
        return GridResampler(*self._grid_args())

    def reference(self, x):
        """The batch reference of this step over a whole recording."""
        if self.op == "bridge":
            return reference_bridge(x, *self._bridge_args())[0]
        if self.op == "resample":
            return reference_resample(x, self.rate_in, self.params["rate"])
        if self.op in FILTERS:
            return reference_sosfilt(self._sos(), x, self.params.get("init", "steady"))
        if self.op == "stft":
            return reference_stft(x, *self._stft_args())
        times, values = x
        return reference_grid(times, values, *self._grid_args())[0]

    @property
    def bins(self) -> int:
        """Output rows per input axis: STFT bins, else 1."""
        if self.op != "stft":
            return 1
        n_fft = self.params.get("n_fft", 100)
        return self.params.get("bins") or n_fft // 2 + 1


def parse_steps(raw: list[Mapping[str, Any]], rate: float, where: str) -> list[Step]:
    """Validate a descriptor's step list for a stream sampled at ``rate``; clear errors."""
    steps: list[Step] = []
    for i, item in enumerate(raw):
        loc = f"{where} step {i}"
        if not isinstance(item, Mapping) or "op" not in item:
            raise ValueError(f"{loc}: each step must be a table with an 'op' key, got {item!r}")
        op = item["op"]
        if op not in KNOWN:
            raise ValueError(f"{loc}: unknown op {op!r}; known ops are {sorted(KNOWN)}")
        params = {k: v for k, v in item.items() if k != "op"}
        extra = set(params) - KNOWN[op]
        if extra:
            raise ValueError(f"{loc}: op {op!r} has unknown parameters {sorted(extra)}")
        if steps and steps[-1].op == "stft":
            raise ValueError(f"{loc}: 'stft' must be the last step of a chain")
        if op in ("grid", "bridge") and steps:
            raise ValueError(f"{loc}: {op!r} must be the first step of a chain")
        if op == "resample" and "rate" not in params:
            raise ValueError(f"{loc}: resample needs 'rate'")
        try:
            probe = Step(op, params, rate, rate).build()  # constructing validates the parameters
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{loc} ({op}): {exc}") from None
        if op == "resample":
            rate_out = float(params["rate"])
        elif op == "stft":
            rate_out = rate / probe.hop
        elif op == "grid":
            rate_out = 1.0 / probe.period
        else:
            rate_out = rate
        steps.append(Step(op, params, rate, rate_out))
        rate = rate_out
    return steps


def reference_chain(steps: list[Step], x) -> np.ndarray:
    """Batch reference of a whole chain: each step's reference applied in turn."""
    for step in steps:
        x = step.reference(x)
    return x
