"""How far past an output's end a feature pipeline must be fed before it emits that output.

A resampler releases whole blocks and needs its filter's half length beyond them; an STFT needs
its window; a grid step needs the next timestamp. Together they decide when, after the last
sample of a 30-s epoch, the epoch can be staged. The fleet (``edge.fleet``) holds each live
device's frames until they reach that point and then decodes and pushes them in one batch, so
the lead is measured on the pipeline itself (pushing zeros in 10-ms steps) rather than derived
from each operator's arithmetic, which would have to be kept in step with the operators.
"""

from __future__ import annotations

import numpy as np

from edge.features import EpochPipeline, FramePipeline

STEP_S = 0.01


def _emitted(out) -> int:
    """Outputs in one push's result: feature frames (..., width, n) or ``SampleEpochs``."""
    return out.shape[-1] if isinstance(out, np.ndarray) else len(out)


def output_lead_s(pipeline: FramePipeline | EpochPipeline, outputs: int = 3) -> float:
    """Seconds of every stream past the end of output ``outputs`` (1-based) that a fresh
    ``pipeline`` needs before emitting it, to ``STEP_S``; the pipeline is consumed."""
    unit_s = 1.0 / pipeline.spec.frame_hz if isinstance(pipeline, FramePipeline) else None
    unit_s = unit_s or pipeline.spec.epoch_s
    end_s = outputs * unit_s
    fed = dict.fromkeys(pipeline.streams, 0)
    emitted = 0

    def feed_to(t_s: float) -> int:
        n_out = 0
        for name, stream in pipeline.streams.items():
            upto = int(np.floor(t_s * stream.rate_hz + 1e-9))
            n = upto - fed[name]
            if n <= 0:
                continue
            x = np.zeros((stream.n_axes, n))
            if isinstance(pipeline, FramePipeline) and stream.timing == "timestamped":
                out = pipeline.push(name, x, (fed[name] + np.arange(n)) / stream.rate_hz)
            else:
                out = pipeline.push(name, x)
            fed[name] = upto
            n_out += _emitted(out)
        return n_out

    t_s = end_s - min(unit_s, 1.0)  # an output is not complete a second before its end
    emitted += feed_to(t_s)
    while emitted < outputs:
        t_s += STEP_S
        if t_s > end_s + 10 * unit_s:
            raise RuntimeError(f"pipeline emitted {emitted} of {outputs} outputs by {t_s:.1f} s")
        emitted += feed_to(t_s)
    return max(0.0, round(t_s - end_s, 6))
