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
