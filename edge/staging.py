"""Per-epoch staging: completed sample epochs → model → one ``EpochRecord`` per 30-s epoch.

Quality rule (DESIGN §1, gaps are events): an epoch whose input channels miss more than
``max_missing`` of their samples is unscored (stage -1) with a reason naming the channels; a
shorter gap is filled by linear interpolation inside the epoch (ends held, never extrapolated
beyond the data) and the epoch is flagged ``interpolated``. Stage codes follow YASA: W=0, N1=1,
N2=2, N3=3, REM=4, unscored=-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.ops.epochs import UNSCORED, SampleEpochs
from edge.ops.gaps import interpolate_gaps

STAGE_CODES = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "REM": 4}
STAGE_NAMES = {v: k for k, v in STAGE_CODES.items()} | {UNSCORED: "unscored"}


@dataclass(frozen=True)
class EpochRecord:
    """One staged (or unscored) 30-s epoch; ``start_s`` counts from the session anchor."""

    index: int
    start_s: float
    stage: int
    probabilities: dict[str, float] | None
    missing: dict[str, float]
    flags: tuple[str, ...] = ()
    reason: str | None = None
    model: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES[self.stage]

    def to_json(self) -> dict:
        out = {
            "index": self.index,
            "start_s": self.start_s,
            "stage": self.stage,
            "stage_name": self.stage_name,
            "probabilities": self.probabilities,
            "missing": self.missing,
            "flags": list(self.flags),
            "model": self.model,
        }
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, d: dict) -> EpochRecord:
        return cls(
            d["index"],
            d["start_s"],
            d["stage"],
            d["probabilities"],
            d["missing"],
            tuple(d["flags"]),
            d.get("reason"),
            d["model"],
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class EpochStager:
    """Runs a per-epoch model on ``SampleEpochs`` with the quality rule of the module docstring."""

    def __init__(
        self,
        model,
        channel_names: list[str],
        epoch_s: float = 30.0,
        model_name: str = "",
        max_missing: float = 0.25,
    ) -> None:
        self.model = model
        self.channels = channel_names
        self.epoch_s = epoch_s
        self.model_name = model_name
        self.max_missing = max_missing

    def flush(self) -> list[EpochRecord]:
        return []  # stateless per epoch: nothing held back

    def snapshot(self) -> dict[str, np.ndarray]:
        return {}

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        pass

    def stage(self, epochs: SampleEpochs) -> list[EpochRecord]:
        if not len(epochs):
            return []
        frac = epochs.nan_fraction.reshape(len(epochs), -1)  # (E, C)
        scored = (frac <= self.max_missing).all(axis=1)
        logits = np.full((len(epochs), len(self.model.classes)), np.nan, np.float32)
        if scored.any():
            x = interpolate_gaps(
                epochs.data.reshape(len(epochs), len(self.channels), -1)[scored], np.float32
            )
            logits[scored] = self.model.predict(x)
        broken = scored & ~np.isfinite(logits).all(axis=1)  # never stage from a non-finite
        scored &= ~broken
        probs = softmax(logits)
        records = []
        for i, k in enumerate(epochs.index.tolist()):
            missing = {c: round(float(f), 4) for c, f in zip(self.channels, frac[i], strict=True)}
            flags = []
            if epochs.partial[i]:
                flags.append("partial")
            if scored[i] and frac[i].any():
                flags.append("interpolated")
            if scored[i]:
                p = {
                    c: round(float(v), 5) for c, v in zip(self.model.classes, probs[i], strict=True)
                }
                stage, reason = STAGE_CODES[self.model.classes[int(np.argmax(probs[i]))]], None
            elif broken[i]:
                p, stage, reason = None, UNSCORED, "model output not finite"
            else:
                worst = [f"{c} {100 * f:.0f}%" for c, f in missing.items() if f > self.max_missing]
                p, stage, reason = None, UNSCORED, "missing data: " + ", ".join(worst)
            records.append(
                EpochRecord(
                    int(k),
                    k * self.epoch_s,
                    stage,
                    p,
                    missing,
                    tuple(flags),
                    reason,
                    self.model_name,
                )
            )
        return records


class FrameStager:
    """Runs a per-second step model on feature frames and stages 30-s epochs from the mean of
    their logits (DESIGN §2.1), one stream, its recurrent state carried from call to call.

    Quality rule: a second whose ``required`` streams (ACC for ANNE: every model variant was
    trained with it) have no data is not stepped — the state is held over the gap, no logits;
    an epoch with more than ``max_missing`` of its seconds unstepped is unscored with a reason.
    Other streams may be missing (a finger unit off, a sensor that a device lacks): their
    features enter as 0, the training mean, as modality dropout trained the model to expect;
    such epochs are scored and flagged ``reduced_sensors``, with each stream's missing fraction.
    """

    def __init__(
        self,
        model,
        stream_columns: dict[str, np.ndarray],
        required: tuple[str, ...] = ("acc",),
        steps_per_epoch: int = 30,
        frame_s: float = 1.0,
        model_name: str = "",
        max_missing: float = 0.25,
    ) -> None:
        from edge.ops.epochs import EpochAggregator, EpochBuffer

        self.model = model
        self.columns = {k: np.asarray(v) for k, v in stream_columns.items()}
        self.channels = list(self.columns)
        self.required = [self.channels.index(r) for r in required]
        self.epoch_s = steps_per_epoch * frame_s
        self.model_name = model_name
        self.max_missing = max_missing
        self.conv, self.h = model.initial_state(1)
        self._logits = EpochAggregator(steps_per_epoch, 0, min_valid=1.0 - max_missing)
        self._missing = EpochBuffer(steps_per_epoch, 0)
        self.steps = 0  # seconds stepped, for counters

    def stage(self, frames: np.ndarray) -> list[EpochRecord]:
        """Feature frames (F, n), in time order from the session anchor → finished epochs."""
        x = np.asarray(frames, np.float64)
        if x.shape[-1] == 0:
            return []
        missing = np.stack([np.isnan(x[c]).any(axis=0) for c in self.columns.values()])
        stepped = ~missing[self.required].any(axis=0)
        logits = np.full((x.shape[-1], len(self.model.classes)), np.nan, np.float32)
        for t in np.flatnonzero(stepped):
            out, self.conv, self.h = self.model.step(x[None, :, t], self.conv, self.h)
            logits[t] = out[0]
        self.steps += int(stepped.sum())
        return self._records(self._logits.push(logits), self._missing.push(missing.astype(float)))

    def flush(self) -> list[EpochRecord]:
        return self._records(self._logits.flush(), self._missing.flush())

    def _records(self, staged, missing) -> list[EpochRecord]:
        """One record per epoch of the missing-data buffer (it always emits: its values are
        0/1, never NaN); the logits buffer may hold back a final epoch with no logits."""
        records = []
        # padding of a partial epoch counts as missing
        frac = np.where(np.isnan(missing.data), 1.0, missing.data).mean(axis=-1)  # (E, S)
        at = {k: j for j, k in enumerate(staged.index.tolist())}
        for i, k in enumerate(missing.index.tolist()):
            miss = {c: round(float(f), 4) for c, f in zip(self.channels, frac[i], strict=True)}
            flags = ["partial"] if missing.partial[i] else []
            j = at.get(k)
            mean = staged.logits[j] if j is not None else None
            scored = j is not None and staged.stage[j] >= 0 and np.isfinite(mean).all()
            if scored:
                if any(miss[c] > 0 for c in miss):
                    flags.append("reduced_sensors")
                probs = softmax(mean[None])[0]
                p = {c: round(float(v), 5) for c, v in zip(self.model.classes, probs, strict=True)}
                stage = STAGE_CODES[self.model.classes[int(np.argmax(probs))]]
                reason = None
            else:
                worst = [self.channels[r] for r in self.required]
                unstepped = 1.0 - float(staged.valid_fraction[j]) if j is not None else 1.0
                p, stage = None, UNSCORED
                reason = f"missing data: {', '.join(worst)} {100 * unstepped:.0f}% of seconds"
            records.append(
                EpochRecord(
                    int(k),
                    k * self.epoch_s,
                    stage,
                    p,
                    miss,
                    tuple(flags),
                    reason,
                    self.model_name,
                )
            )
        return records

    def snapshot(self) -> dict[str, np.ndarray]:
        snap = {"conv": self.conv.copy(), "h": self.h.copy(), "steps": np.array(self.steps)}
        snap.update({f"logits.{k}": v for k, v in self._logits.snapshot().items()})
        snap.update({f"missing.{k}": v for k, v in self._missing.snapshot().items()})
        return snap

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        self.conv = np.asarray(snap["conv"], np.float32).copy()
        self.h = np.asarray(snap["h"], np.float32).copy()
        self.steps = int(snap["steps"])
        self._logits.restore({k[7:]: v for k, v in snap.items() if k.startswith("logits.")})
        self._missing.restore({k[8:]: v for k, v in snap.items() if k.startswith("missing.")})
