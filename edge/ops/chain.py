"""Composition: operators in sequence (``Chain``) and per-channel frames aligned into one
feature vector in a fixed order (``FrameAssembler``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.ops.base import Snapshot, StreamOp


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if p is not None]
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


class Chain:
    """Operators applied one after another; a ``Chain`` is itself an operator."""

    def __init__(self, ops: Sequence[StreamOp]) -> None:
        if not ops:
            raise ValueError("a Chain needs at least one operator")
        self.ops = list(ops)

    def push(self, chunk):
        for op in self.ops:
            chunk = op.push(chunk)
        return chunk

    def flush(self) -> np.ndarray:
        """Flush in order: each operator's tail passes through the operators after it."""
        pending = None
        for op in self.ops:
            parts = [] if pending is None else [op.push(pending)]
            parts.append(op.flush())
            pending = _concat(parts)
        return pending

    def snapshot(self) -> Snapshot:
        return {f"{i}.{k}": v for i, op in enumerate(self.ops) for k, v in op.snapshot().items()}

    def restore(self, snapshot: Snapshot) -> None:
        for i, op in enumerate(self.ops):
            prefix = f"{i}."
            op.restore({k[len(prefix) :]: v for k, v in snapshot.items() if k.startswith(prefix)})


class FrameAssembler:
    """Aligns per-slot frame streams by frame index and emits (..., n_features, frames).

    Each slot (a channel's chain output) delivers frames shaped (..., width, n) in order from
    frame 0. A frame is emitted once every slot has delivered it; ``flush`` pads slots that
    ended early with NaN (missing, never zero) up to the longest slot.
    """

    def __init__(self, slots: Sequence[tuple[str, int]]) -> None:
        names = [n for n, _ in slots]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate slot names in {names}")
        self.slots = list(slots)
        self.width = sum(w for _, w in slots)
        self._widths = dict(self.slots)
        self._parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        self._count: dict[str, int] = {n: 0 for n in names}
        self._lead_shape: tuple[int, ...] | None = None  # leading (stream) axes, once seen
        self._n_emitted = 0

    def add(self, slot: str, frames: np.ndarray) -> None:
        if slot not in self._parts:
            raise KeyError(f"unknown slot {slot!r}; slots are {list(self._parts)}")
        if frames.ndim < 2 or frames.shape[-2] != self._widths[slot]:
            raise ValueError(
                f"slot {slot!r} expects width {self._widths[slot]}, got shape {frames.shape}"
            )
        if self._lead_shape is None:
            self._lead_shape = frames.shape[:-2]
        if frames.shape[-1]:
            self._parts[slot].append(frames)
            self._count[slot] += frames.shape[-1]

    def _take(self, n: int, lead: tuple[int, ...]) -> np.ndarray:
        cols = []
        for name, width in self.slots:
            parts = self._parts[name]
            buf = (
                (np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0])
                if parts
                else np.zeros((*lead, width, 0))
            )
            if buf.shape[-1] < n:  # only on flush: a slot that ended early is missing data
                fill = np.full((*lead, width, n - buf.shape[-1]), np.nan)
                buf = np.concatenate((buf, fill), axis=-1)
            cols.append(buf[..., :n])
            rest = buf[..., n:]
            self._parts[name] = [rest] if rest.shape[-1] else []
            self._count[name] = rest.shape[-1]
        self._n_emitted += n
        return np.concatenate(cols, axis=-2)

    def ready(self) -> np.ndarray | None:
        """All frames every slot has delivered, or None when there are none yet."""
        n = min(self._count.values())
        if n == 0:
            return None
        return self._take(n, self._lead_shape)

    def flush(self) -> np.ndarray | None:
        if self._lead_shape is None:
            return None
        return self._take(max(self._count.values()), self._lead_shape)

    @property
    def n_emitted(self) -> int:
        return self._n_emitted

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {"n_emitted": np.array(self._n_emitted, dtype=np.int64)}
        if self._lead_shape is not None:
            snap["lead"] = np.array(self._lead_shape, dtype=np.int64)
        for name, parts in self._parts.items():
            if parts:
                snap[f"pending.{name}"] = np.concatenate(parts, axis=-1)
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        self._n_emitted = int(snapshot["n_emitted"])
        lead = snapshot.get("lead")
        self._lead_shape = None if lead is None else tuple(int(v) for v in lead)
        for name in self._parts:
            key = f"pending.{name}"
            buf = snapshot.get(key)
            self._parts[name] = [np.array(buf)] if buf is not None else []
            self._count[name] = 0 if buf is None else buf.shape[-1]
