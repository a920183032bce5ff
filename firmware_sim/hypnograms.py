"""A recording's own scoring, whatever lab wrote it, as stage codes per 30-s epoch.

Codes: W 0, N1 1, N2 2, N3 3, REM 4, -1 unscored (R&K stages 3 and 4 merge into N3; movement,
unknown and ``?`` are unscored). Formats, chosen by content:

- EDF+ annotations (Sleep-EDF ``*-Hypnogram.edf``): onset, duration, text;
- NSRR XML (``<ScoredEvent>`` with ``EventConcept`` ``Wake|0``, ``Stage 2 sleep|2``, ...,
  ``Start`` and ``Duration`` in seconds); documents with a DOCTYPE are refused (no entities);
- DREAMS text (``[Hypnogram]`` then one R&K code per 5 s: 5 W, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4,
  negative unknown);
- CSV/TSV: a header row; a stage column (``stage``/``stage_name``/``sleep_stage``/``label``,
  text W/Wake/N1/S1/.../REM/R or our numeric codes) and optionally ``onset``/``start_s`` and
  ``duration`` columns (else one row per 30 s) — edge-run's own ``hypnogram.csv`` reads back.

A finer grid (DREAMS 5 s, 20-s R&K epochs) becomes 30-s epochs by the rule the shared DREAMS set
uses: the stage of at least 4 of the 6 five-second parts, else unscored.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

EPOCH_S = 30.0


class HypnogramError(ValueError):
    """A hypnogram that cannot be read; one line."""


_TEXT = {
    "w": 0, "wake": 0, "sleep stage w": 0, "0": 0,
    "n1": 1, "s1": 1, "stage 1": 1, "sleep stage 1": 1, "1": 1,
    "n2": 2, "s2": 2, "stage 2": 2, "sleep stage 2": 2, "2": 2,
    "n3": 3, "s3": 3, "s4": 3, "n4": 3, "stage 3": 3, "stage 4": 3,
    "sleep stage 3": 3, "sleep stage 4": 3, "3": 3,
    "r": 4, "rem": 4, "sleep stage r": 4, "4": 4,
    "?": -1, "-1": -1, "unscored": -1, "movement": -1, "movement time": -1,
    "sleep stage ?": -1, "m": -1, "mt": -1, "u": -1, "unknown": -1, "artifact": -1,
}  # fmt: skip
_NSRR = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4}  # EventConcept number; others (6, 9) unscored
_DREAMS = {5: 0, 4: 4, 3: 1, 2: 2, 1: 3, 0: 3}


def stage_code(text: str) -> int:
    """One stage label → code; HypnogramError when it is not a stage."""
    t = text.strip().lower()
    if t.endswith(".0"):
        t = t[:-2]
    if t not in _TEXT:
        raise HypnogramError(f"unknown stage label {text!r}")
    return _TEXT[t]


def from_spans(spans: list[tuple[float, float, int]], epoch_s: float = EPOCH_S) -> np.ndarray:
    """(onset s, duration s, code) spans → codes per epoch: the code covering at least 2/3 of
    the epoch (4 of 6 five-second parts), else -1."""
    end = max((o + d for o, d, _ in spans), default=0.0)
    n5 = int(np.ceil(end / 5.0 - 1e-9))
    fine = np.full(n5, -9, dtype=np.int16)
    for onset, duration, code in spans:
        a, b = int(round(onset / 5.0)), int(round((onset + duration) / 5.0))
        fine[a:b] = code
    return from_fine(fine, 5.0, epoch_s)


def from_fine(fine: np.ndarray, step_s: float, epoch_s: float = EPOCH_S) -> np.ndarray:
    """Codes on a grid of ``step_s`` → per epoch (majority of at least 2/3, else -1)."""
    per = int(round(epoch_s / step_s))
    n = int(np.ceil(fine.size / per))
    padded = np.full(n * per, -9, dtype=np.int16)
    padded[: fine.size] = fine
    blocks = padded.reshape(n, per)
    out = np.full(n, -1, dtype=np.int8)
    for k in range(5):
        out[(blocks == k).sum(axis=1) * 3 >= 2 * per] = k
    return out


def stages_in_annotations(spans: list[tuple[float, float, str]]) -> np.ndarray | None:
    """A recording's own EDF+ annotations as stages per epoch, from those that name a stage
    (``Sleep stage N2``, ``Wake``, ...; other events are ignored); None when none does."""
    staged = []
    for onset, duration, text in spans:
        t = text.strip().lower().removeprefix("sleep stage ").strip()
        if (text.lower().startswith("sleep stage") or t in ("wake", "rem")) and duration > 0:
            try:
                staged.append((onset, duration, stage_code(t)))
            except HypnogramError:
                continue
    return from_spans(staged) if staged else None


def read_stages(path: Path) -> np.ndarray:
    """Stage codes per 30-s epoch from any supported hypnogram file."""
    path = Path(path)
    try:
        head = path.read_bytes()[:4096]
    except OSError as exc:
        raise HypnogramError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if head[:8].strip() == b"0" and path.suffix.lower() in (".edf", ".bdf", ".rec"):
            return _edf_annotations(path)
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        stripped = text.lstrip()
        if stripped.startswith("<"):
            return _nsrr_xml(text)
        if stripped.lower().startswith("[hypnogram]"):
            return _dreams(text)
        return _table(text)
    except HypnogramError as exc:
        raise HypnogramError(f"{path}: {exc}") from None
    except Exception as exc:  # any parse failure of a hostile file: one line
        raise HypnogramError(f"{path}: not a readable hypnogram ({exc})") from None


def _edf_annotations(path: Path) -> np.ndarray:
    import edfio

    edf = edfio.read_edf(path)
    spans = [(a.onset, a.duration or 0.0, stage_code(a.text)) for a in edf.annotations]
    return from_spans(spans)


def _nsrr_xml(text: str) -> np.ndarray:
    import xml.etree.ElementTree as ET

    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise HypnogramError("XML with a DOCTYPE or entities is refused")
    root = ET.fromstring(text)
    spans = []
    for ev in root.iter("ScoredEvent"):
        concept = (ev.findtext("EventConcept") or "").strip()
        etype = (ev.findtext("EventType") or "").lower()
        m = re.search(r"\|(\d+)$", concept)
        if "stage" not in etype and not m:
            continue
        if m is None:
            continue
        code = _NSRR.get(int(m.group(1)), -1)
        spans.append((float(ev.findtext("Start")), float(ev.findtext("Duration")), code))
    if not spans:
        raise HypnogramError("no sleep-stage ScoredEvent")
    return from_spans(spans)


def _dreams(text: str) -> np.ndarray:
    values = [int(float(v)) for v in text.split()[1:]]
    fine = np.array([_DREAMS.get(v, -9) for v in values], dtype=np.int16)
    if not fine.size:
        raise HypnogramError("no stage values")
    return from_fine(fine, 5.0)


def _table(text: str) -> np.ndarray:
    sample = text[:2048]
    delim = "\t" if "\t" in sample else (";" if sample.count(";") > sample.count(",") else ",")
    rows = list(csv.reader(io.StringIO(text), delimiter=delim))
    if len(rows) < 2:
        raise HypnogramError("a CSV/TSV hypnogram needs a header row and stage rows")
    head = [h.strip().lower() for h in rows[0]]

    def col(*names: str) -> int | None:
        return next((head.index(n) for n in names if n in head), None)

    s = col("stage", "stage_name", "sleep_stage", "label", "hypnogram", "annotation")
    if s is None:
        raise HypnogramError(f"no stage column among {rows[0]} (stage, sleep_stage, label)")
    o = col("onset", "start_s", "start", "onset_s", "time_s")
    d = col("duration", "duration_s")
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if o is None:
        return np.array([stage_code(r[s]) for r in body], dtype=np.int8)
    spans = []
    for k, r in enumerate(body):
        onset = float(r[o])
        if d is not None:
            dur = float(r[d])
        else:
            dur = float(body[k + 1][o]) - onset if k + 1 < len(body) else EPOCH_S
        spans.append((onset, dur, stage_code(r[s])))
    return from_spans(spans)
