"""Helpers for chunking properties: random splits, streaming runs, snapshot round trips."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st


@st.composite
def cuts(draw, n: int, max_cuts: int = 12) -> list[int]:
    """Sorted cut points in [0, n]; repeats give empty chunks, neighbours one-sample chunks."""
    points = draw(st.lists(st.integers(0, n), max_size=max_cuts))
    if n and draw(st.booleans()):
        start = draw(st.integers(0, n - 1))
        points += [start, start + 1]  # force a one-sample chunk
    return sorted(points)


def pieces(n: int, points: list[int]) -> list[slice]:
    edges = [0, *points, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def through_npz(snapshot: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A snapshot must survive what a checkpoint does to it: np.savez and back."""
    buf = io.BytesIO()
    np.savez(buf, **snapshot)
    buf.seek(0)
    with np.load(buf) as z:
        return {k: z[k] for k in z.files}


def run_chunked(
    make: Callable[[], object],
    x: np.ndarray,
    points: list[int],
    restore_at: int | None = None,
    cat: Callable[[list], np.ndarray] = lambda parts: np.concatenate(parts, axis=-1),
):
    """Stream ``x`` (time last) through a fresh operator in the given chunks, then flush.

    With ``restore_at`` (a chunk number), the operator is snapshotted there, serialized, and
    replaced by a fresh one restored from the snapshot before the rest is pushed.
    """
    op = make()
    outs = []
    for i, sl in enumerate(pieces(x.shape[-1], points)):
        if restore_at is not None and i == restore_at:
            snap = through_npz(op.snapshot())
            op = make()
            op.restore(snap)
        outs.append(op.push(x[..., sl]))
    outs.append(op.flush())
    return cat(outs)


def sequence_in_pieces(model, x: np.ndarray, points: list[int]):
    """A step model's ``sequence`` over ``x`` [T, F] cut at ``points``, one stream's state
    carried from piece to piece → (logits [T, K], conv, h)."""
    conv, h = model.initial_state(1)
    got = []
    for s in pieces(len(x), points):
        if s.stop > s.start:
            y, conv, h = model.sequence(x[s], conv, h)
            got.append(y)
    return np.concatenate(got), conv, h


def stepped_state(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One stream's (conv, h) after stepping ``x`` [T, F] one second a call."""
    conv, h = model.initial_state(1)
    for t in range(len(x)):
        _, conv, h = model.step(x[t : t + 1], conv, h)
    return conv, h
