"""Many streams, one step call: the recurrent state of every stream as rows of two arrays.

``StreamBank`` keeps ``conv`` [B, ...] and ``h`` [B, ...] for the streams that have joined;
``step({id: features})`` advances the named streams together in one model call (streams not
named hold their state: a device in a gap does not step); streams join (fresh or from a
snapshot) and leave at any time; a stream's snapshot is its rows, so it can be checkpointed,
moved to another process and continue exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

from edge.models.call_costs import CallCosts
from edge.models.step_runner import StepModel, run_sequence


class StreamBank:
    def __init__(self, model: StepModel) -> None:
        self.model = model
        self._rows: dict[Hashable, int] = {}
        self.conv, self.h = model.initial_state(0)
        # batched steps made and stream-steps they carried (mean batch size); one stream's
        # seconds run as a sequence count one step each, however few calls the backend makes
        self.calls = 0
        self.stream_steps = 0
        self.costs: CallCosts | None = None  # measured on the first ``step_queues``

    def __contains__(self, stream: Hashable) -> bool:
        return stream in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def streams(self) -> list[Hashable]:
        return list(self._rows)

    def join(self, stream: Hashable, snapshot: Mapping[str, np.ndarray] | None = None) -> None:
        """Add a stream from a zero state, or from a snapshot taken by ``snapshot``/``leave``."""
        if stream in self._rows:
            raise KeyError(f"stream {stream!r} has already joined")
        conv, h = self.model.initial_state(1)
        if snapshot is not None:
            conv = np.asarray(snapshot["conv"], np.float32).reshape(conv.shape)
            h = np.asarray(snapshot["h"], np.float32).reshape(h.shape)
        self._rows[stream] = len(self._rows)
        self.conv = np.concatenate([self.conv, conv])
        self.h = np.concatenate([self.h, h])

    def leave(self, stream: Hashable) -> dict[str, np.ndarray]:
        """Remove a stream; returns its final snapshot."""
        snap = self.snapshot(stream)
        row = self._rows.pop(stream)
        keep = np.ones(len(self.conv), dtype=bool)
        keep[row] = False
        self.conv, self.h = self.conv[keep], self.h[keep]
        self._rows = {s: r - (r > row) for s, r in self._rows.items()}
        return snap

    def snapshot(self, stream: Hashable) -> dict[str, np.ndarray]:
        row = self._rows[stream]
        return {"conv": self.conv[row].copy(), "h": self.h[row].copy()}

    def restore(self, stream: Hashable, snapshot: Mapping[str, np.ndarray]) -> None:
        row = self._rows[stream]
        self.conv[row] = snapshot["conv"]
        self.h[row] = snapshot["h"]

    def step_sequence(self, stream: Hashable, inputs: np.ndarray) -> np.ndarray:
        """Consecutive seconds of one stream (inputs [m, F], oldest first) → logits [m, K],
        its state carried through them, without the per-call bookkeeping of ``step`` (the common
        case of one device with seconds queued): the model's ``sequence`` where it has one,
        else one batch-1 call per second."""
        row = self._rows[stream]
        conv, h = self.conv[row : row + 1], self.h[row : row + 1]
        x = np.asarray(inputs, np.float32)
        logits, conv, h = run_sequence(self.model, x, conv, h)
        self.conv[row], self.h[row] = conv[0], h[0]
        self.calls += len(x)
        self.stream_steps += len(x)
        return logits

    def step_queues(self, queues: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        """Every queued second of the named streams (inputs [m, F] each, oldest first) →
        their logits [m, K]: the longest queues through ``step_sequence`` and the rest
        second by second in shared ``step`` calls, as ``CallCosts.plan`` finds cheapest."""
        queues = {s: x for s, x in queues.items() if len(x)}
        if not queues:
            return {}
        if self.costs is None:
            width = next(iter(queues.values())).shape[1]
            self.costs = CallCosts.of(self.model, width)
        order = sorted(queues, key=lambda s: len(queues[s]), reverse=True)
        n_sequences = self.costs.plan([len(queues[s]) for s in order])
        out = {s: self.step_sequence(s, queues[s]) for s in order[:n_sequences]}
        shared = order[n_sequences:]
        if shared:
            k = len(self.model.classes)
            for s in shared:
                out[s] = np.empty((len(queues[s]), k), np.float32)
            for t in range(len(queues[shared[0]])):
                step = self.step({s: queues[s][t] for s in shared if len(queues[s]) > t})
                for s, row in step.items():
                    out[s][t] = row
        return out

    def step(self, features: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        """One second for each named stream (features [F] each) → its logits [K]."""
        if not features:
            return {}
        ids = list(features)
        self.calls += 1
        self.stream_steps += len(ids)
        rows = np.fromiter((self._rows[s] for s in ids), dtype=np.int64, count=len(ids))
        x = np.stack([np.asarray(features[s], np.float32) for s in ids])
        if len(rows) == len(self._rows) and (rows == np.arange(len(rows))).all():
            logits, self.conv, self.h = self.model.step(x, self.conv, self.h)
        else:
            logits, conv, h = self.model.step(x, self.conv[rows], self.h[rows])
            self.conv[rows], self.h[rows] = conv, h
        return dict(zip(ids, logits, strict=True))
