"""The one interface every streaming operator shares.

An operator is a small stateful object: ``push(chunk)`` returns whatever output became final,
``flush()`` returns the rest at end of stream, ``snapshot()`` returns the full state as a dict of
numpy arrays and ``restore(snapshot)`` puts it back (into a fresh object built with the same
parameters). Time is the last axis of every array; any leading axes are independent streams
(devices, channels) processed in the same call.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

Snapshot = dict[str, np.ndarray]


@runtime_checkable
class StreamOp(Protocol):
    """Stateful streaming operator: chunked output == one batch run of its reference."""

    def push(self, chunk: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def snapshot(self) -> Snapshot: ...

    def restore(self, snapshot: Snapshot) -> None: ...


def as_float_chunk(chunk: object, n_lead: tuple[int, ...] | None, name: str) -> np.ndarray:
    """Validate a chunk: numeric, at least 1-D, leading axes matching earlier chunks.

    Returns a float64 array. ``n_lead`` is the leading shape seen so far (None before the first
    chunk). Raises ``TypeError``/``ValueError`` with a message that names the operator.
    """
    if type(chunk) is np.ndarray and chunk.dtype == np.float64 and chunk.ndim:
        if n_lead is not None and chunk.shape[:-1] != n_lead:
            raise ValueError(
                f"{name}: chunk leading shape {chunk.shape[:-1]} differs from the stream's {n_lead}"
            )
        return chunk  # fast path: already float64, no copy
    arr = np.asarray(chunk)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: chunk must be real numeric, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name}: chunk must have a time axis (last axis), got a scalar")
    if n_lead is not None and arr.shape[:-1] != n_lead:
        raise ValueError(
            f"{name}: chunk leading shape {arr.shape[:-1]} differs from the stream's {n_lead}"
        )
    return arr.astype(np.float64, copy=False)


def check_finished(finished: bool, name: str) -> None:
    if finished:
        raise RuntimeError(f"{name}: stream already flushed; build a new operator to start again")
