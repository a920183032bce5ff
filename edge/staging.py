"""Per-epoch staging: completed sample epochs → model → one ``EpochRecord`` per 30-s epoch.

Quality rule (DESIGN §1, gaps are events): an epoch whose input channels miss more than
``max_missing`` of their samples is unscored (stage -1) with a reason naming the channels; a
shorter gap is filled by linear interpolation inside the epoch (ends held, never extrapolated
beyond the data) and the epoch is flagged ``interpolated``. Gaps short enough to be bridged in
the sample domain (a ``bridge`` step, DESIGN §7) are not missing: each record carries the
fraction of each channel's samples that were bridged, and the flag ``bridged``. Stage codes
follow YASA: W=0, N1=1, N2=2, N3=3, REM=4, unscored=-1.

Reduced input: a channel with an ``absent`` rule (the device descriptor's, e.g. PSG: one EEG
copies the other, EOG and EMG are zero) that misses more than ``max_missing`` of an epoch (a
sensor off, a stream the recording lacks) is filled by that rule instead of leaving the epoch
unscored; the record is flagged ``reduced``. A copy needs its source channel present; an epoch
with no channel of its own is unscored.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from edge.models.streams import StreamBank
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
    bridged: dict[str, float] = field(default_factory=dict)
    groups: tuple[str, ...] | None = None  # sensor groups the model used (step models)

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
            "bridged": self.bridged,
            "flags": list(self.flags),
            "model": self.model,
        }
        if self.groups is not None:
            out["groups"] = list(self.groups)
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
            bridged=d.get("bridged", {}),
            groups=None if d.get("groups") is None else tuple(d["groups"]),
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
        absent: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.channels = channel_names
        self.epoch_s = epoch_s
        self.model_name = model_name
        self.max_missing = max_missing
        self.absent = dict(absent or {})  # channel -> "zero" | "copy:CHANNEL"

    def _fill(self, frac: np.ndarray) -> np.ndarray:
        """(E, C) bool: channels the reduced-input rule fills (see the module docstring)."""
        ok = frac <= self.max_missing
        fill = np.zeros_like(ok)
        for c, rule in self.absent.items():
            if c not in self.channels:
                continue
            j = self.channels.index(c)
            if rule == "zero":
                fill[:, j] = ~ok[:, j]
            elif rule.startswith("copy:") and rule[5:] in self.channels:
                fill[:, j] = ~ok[:, j] & ok[:, self.channels.index(rule[5:])]
        fill &= ok.any(axis=1, keepdims=True)  # something real must remain
        return fill

    def flush(self) -> list[EpochRecord]:
        return []  # stateless per epoch: nothing held back

    def collect(self) -> list[EpochRecord]:
        return []  # stages as epochs arrive: nothing deferred

    def close(self) -> None:
        pass

    def snapshot(self) -> dict[str, np.ndarray]:
        return {}

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        pass

    def stage(self, epochs: SampleEpochs) -> list[EpochRecord]:
        if not len(epochs):
            return []
        frac = epochs.nan_fraction.reshape(len(epochs), -1)  # (E, C)
        fill = self._fill(frac) if self.absent else np.zeros(frac.shape, bool)
        scored = ((frac <= self.max_missing) | fill).all(axis=1)
        logits = np.full((len(epochs), len(self.model.classes)), np.nan, np.float32)
        if scored.any():
            x = epochs.data.reshape(len(epochs), len(self.channels), -1)[scored]
            if fill.any():
                x = self._filled(np.array(x, dtype=np.float64), fill[scored])
            x = interpolate_gaps(x, np.float32)
            logits[scored] = self.model.predict(x)
        broken = scored & ~np.isfinite(logits).all(axis=1)  # never stage from a non-finite
        scored &= ~broken
        probs = softmax(logits)
        bridged = (
            np.zeros_like(frac)
            if epochs.bridged is None
            else epochs.bridged.reshape(len(epochs), -1)
        )
        records = []
        for i, k in enumerate(epochs.index.tolist()):
            missing = {c: round(float(f), 4) for c, f in zip(self.channels, frac[i], strict=True)}
            filled = {c: round(float(f), 4) for c, f in zip(self.channels, bridged[i], strict=True)}
            flags = []
            if epochs.partial[i]:
                flags.append("partial")
            if bridged[i].any():
                flags.append("bridged")
            if scored[i] and (frac[i] * ~fill[i]).any():
                flags.append("interpolated")
            if scored[i] and fill[i].any():
                flags.append("reduced")
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
                    bridged=filled,
                )
            )
        return records

    def _filled(self, x: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """``x`` (E, C, L) with the channels marked in ``fill`` (E, C) replaced by their rule."""
        for j, c in enumerate(self.channels):
            rows = fill[:, j]
            if not rows.any():
                continue
            rule = self.absent[c]
            x[rows, j] = 0.0 if rule == "zero" else x[rows, self.channels.index(rule[5:])]
        return x


class FrameStager:
    """Runs a per-second step model on feature frames and stages 30-s epochs from the mean of
    their logits (DESIGN §2.1), one stream, its recurrent state carried from call to call.

    Quality rule, per sensor group (a stream: ECG, PPG, ACC, each temperature): each second has
    a validity mask, a stream being valid when all its features are finite. An invalid
    stream's features enter the model as 0, the training mean, as modality dropout trained the
    model to expect (a finger unit off, a sensor a device lacks, a gap too long to bridge), so
    the recurrent state keeps stepping through gaps. A second is not stepped (the state is held,
    no logits) only when none of the ``staging_streams`` is valid (the streams that carry
    staging information on their own; all streams when empty); an epoch with more than
    ``max_missing`` of its seconds unstepped is unscored with the reason. Scored epochs list
    the streams they used (``groups``), each stream's missing and bridged fractions, and are
    flagged ``reduced_sensors`` when a stream was missing and ``bridged`` when samples were
    bridged.

    The recurrent state is one row of a ``StreamBank``. Alone, the stager owns a bank of one and
    steps as frames arrive. Given a shared ``bank`` (many devices in one process), ``stage``
    only queues its seconds; whoever owns the bank calls :func:`step_together` on all its
    stagers, so every device's second goes through one batched model call, then ``collect``.
    """

    def __init__(
        self,
        model,
        stream_columns: dict[str, np.ndarray],
        staging_streams: tuple[str, ...] = (),
        steps_per_epoch: int = 30,
        frame_s: float = 1.0,
        model_name: str = "",
        max_missing: float = 0.25,
        bank: StreamBank | None = None,
        stream_id: Hashable = 0,
    ) -> None:
        from edge.ops.epochs import EpochAggregator, EpochBuffer

        self.model = model
        self.columns = {k: np.asarray(v) for k, v in stream_columns.items()}
        self.channels = list(self.columns)
        unknown = set(staging_streams) - set(self.channels)
        if unknown:
            raise ValueError(f"staging streams {sorted(unknown)} are not among {self.channels}")
        self.staging = [self.channels.index(r) for r in staging_streams] or list(
            range(len(self.channels))
        )
        self.epoch_s = steps_per_epoch * frame_s
        self.model_name = model_name
        self.max_missing = max_missing
        self.deferred = bank is not None
        self.bank = bank if bank is not None else StreamBank(model)
        self.stream_id = stream_id
        self.bank.join(stream_id)
        self._logits = EpochAggregator(steps_per_epoch, 0, min_valid=1.0 - max_missing)
        self._missing = EpochBuffer(steps_per_epoch, 0)
        self._bridged = EpochBuffer(steps_per_epoch, 0)
        self._todo: list[_Seconds] = []  # queued seconds, in time order
        self.steps = 0  # seconds stepped, for counters

    def stage(
        self, frames: np.ndarray, bridged: dict[str, np.ndarray] | None = None
    ) -> list[EpochRecord]:
        """Feature frames (F, n), in time order from the session anchor, and the fraction of
        each stream's samples bridged in each of them → finished epochs (none until
        :func:`step_together` has run, when the bank is shared)."""
        self.enqueue(frames, bridged)
        if self.deferred:
            return []
        step_together([self])
        return self.collect()

    def enqueue(self, frames: np.ndarray, bridged: dict[str, np.ndarray] | None = None) -> None:
        x = np.asarray(frames, np.float64)
        n = x.shape[-1]
        if n == 0:
            return
        missing = np.stack([np.isnan(x[c]).any(axis=0) for c in self.columns.values()])
        stepped = ~missing[self.staging].all(axis=0)
        inputs = x[:, stepped]
        hide = missing[:, stepped]
        if hide.any():  # a stream partly missing in a second is missing as a whole
            inputs = inputs.copy()
            for cols, h in zip(self.columns.values(), hide, strict=True):
                if h.any():
                    inputs[np.ix_(cols, np.flatnonzero(h))] = np.nan
        logits = np.full((n, len(self.model.classes)), np.nan, np.float32)
        fill = np.zeros((len(self.channels), n))
        for i, c in enumerate(self.channels):
            if bridged and c in bridged:
                fill[i] = bridged[c]
        inputs = np.ascontiguousarray(inputs.T, dtype=np.float32)
        self._todo.append(_Seconds(inputs, np.flatnonzero(stepped), logits, missing, fill))

    def pending_inputs(self) -> np.ndarray:
        """Feature rows [m, F] still to step, oldest first."""
        rows = [s.inputs for s in self._todo if not s.done]
        if not rows:
            return np.zeros((0, 0), np.float32)
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def accept(self, logits: np.ndarray) -> None:
        """The logits [m, K] of ``pending_inputs``, in the same order."""
        at = 0
        for s in self._todo:
            if s.done:
                continue
            n = len(s.at)
            s.logits[s.at] = logits[at : at + n]
            s.done, at = True, at + n
        self.steps += at

    def collect(self) -> list[EpochRecord]:
        """Epochs finished by the seconds stepped so far."""
        records: list[EpochRecord] = []
        while self._todo and self._todo[0].done:
            s = self._todo.pop(0)
            records += self._records(
                self._logits.push(s.logits),
                self._missing.push(s.missing.astype(float)),
                self._bridged.push(s.bridged),
            )
        return records

    def flush(self) -> list[EpochRecord]:
        if any(not s.done for s in self._todo):
            step_together([self])
        records = self.collect()
        return records + self._records(
            self._logits.flush(), self._missing.flush(), self._bridged.flush()
        )

    def close(self) -> None:
        """Leave the bank (a device gone from a shared bank)."""
        if self.stream_id in self.bank:
            self.bank.leave(self.stream_id)

    def _records(self, staged, missing, bridged) -> list[EpochRecord]:
        """One record per epoch of the missing-data buffer (it always emits: its values are
        0/1, never NaN); the logits buffer may hold back a final epoch with no logits."""
        records = []
        # padding of a partial epoch counts as missing
        frac = np.where(np.isnan(missing.data), 1.0, missing.data).mean(axis=-1)  # (E, S)
        filled = np.nan_to_num(bridged.data).mean(axis=-1)  # (E, S)
        at = {k: j for j, k in enumerate(staged.index.tolist())}
        for i, k in enumerate(missing.index.tolist()):
            miss = {c: round(float(f), 4) for c, f in zip(self.channels, frac[i], strict=True)}
            fill = {c: round(float(f), 4) for c, f in zip(self.channels, filled[i], strict=True)}
            flags = ["partial"] if missing.partial[i] else []
            if filled[i].any():
                flags.append("bridged")
            j = at.get(k)
            mean = staged.logits[j] if j is not None else None
            scored = j is not None and staged.stage[j] >= 0 and np.isfinite(mean).all()
            groups = None
            if scored:
                if any(miss[c] > 0 for c in miss):
                    flags.append("reduced_sensors")
                groups = tuple(c for c in self.channels if miss[c] < 1.0)
                probs = softmax(mean[None])[0]
                p = {c: round(float(v), 5) for c, v in zip(self.model.classes, probs, strict=True)}
                stage = STAGE_CODES[self.model.classes[int(np.argmax(probs))]]
                reason = None
            else:
                names = [self.channels[r] for r in self.staging]
                unstepped = 1.0 - float(staged.valid_fraction[j]) if j is not None else 1.0
                p, stage = None, UNSCORED
                reason = (
                    f"missing data: no {' or '.join(names)} in {100 * unstepped:.0f}% of seconds"
                )
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
                    bridged=fill,
                    groups=groups,
                )
            )
        return records

    def snapshot(self) -> dict[str, np.ndarray]:
        if self._todo:
            raise RuntimeError("FrameStager.snapshot with seconds not yet stepped")
        state = self.bank.snapshot(self.stream_id)
        snap = {"conv": state["conv"][None], "h": state["h"][None], "steps": np.array(self.steps)}
        snap.update({f"logits.{k}": v for k, v in self._logits.snapshot().items()})
        snap.update({f"missing.{k}": v for k, v in self._missing.snapshot().items()})
        snap.update({f"bridged.{k}": v for k, v in self._bridged.snapshot().items()})
        return snap

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        self.bank.restore(self.stream_id, {"conv": snap["conv"][0], "h": snap["h"][0]})
        self.steps = int(snap["steps"])
        self._todo = []
        self._logits.restore({k[7:]: v for k, v in snap.items() if k.startswith("logits.")})
        self._missing.restore({k[8:]: v for k, v in snap.items() if k.startswith("missing.")})
        self._bridged.restore({k[8:]: v for k, v in snap.items() if k.startswith("bridged.")})


@dataclass
class _Seconds:
    """One ``enqueue`` call: the inputs of its stepped seconds and where their logits go."""

    inputs: np.ndarray  # [m, F] float32
    at: np.ndarray  # the m stepped seconds' positions among the call's n
    logits: np.ndarray  # [n, K], NaN for unstepped seconds
    missing: np.ndarray  # [streams, n] bool
    bridged: np.ndarray  # [streams, n] fraction of samples bridged
    done: bool = False


def step_together(stagers: list[FrameStager]) -> None:
    """Step every queued second of ``stagers`` (all on one bank): second t of each stager's
    queue goes through one batched model call with second t of the others, or a long queue
    through one sequence call, whichever the bank finds cheaper (``StreamBank.step_queues``)."""
    work = {s.stream_id: s.pending_inputs() for s in stagers}
    out = stagers[0].bank.step_queues(work) if stagers else {}
    for s in stagers:
        s.accept(out.get(s.stream_id, np.zeros((0, len(s.model.classes)), np.float32)))
