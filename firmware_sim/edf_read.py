"""Tolerant EDF/EDF+/BDF reading: edfio first, then a lenient header parse of our own.

Clinical files are often slightly out of spec (the DREAMS excerpts, odd digital ranges, record
durations that are not whole seconds, a record count of -1, non-ASCII text fields). edfio reads
what the spec allows; when it refuses, ``read_signals`` parses the fixed-width header itself,
accepting what can be read unambiguously and noting each liberty as one warning line
(``EdfSignals.warnings``). What cannot be read is ``EdfReadError``, one line saying why. Never a
traceback: every parse error of a hostile header ends here. Annotation signals (EDF+) are not
data channels and are skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ANNOTATION_LABELS = ("edf annotations", "bdf annotations")


class EdfReadError(ValueError):
    """An EDF/BDF file that cannot be read; the message is one line."""


@dataclass
class EdfSignals:
    labels: list[str]
    rates: list[float]
    _data: list  # per signal: an array, or a callable giving one
    warnings: list[str] = field(default_factory=list)
    annotations: list[tuple[float, float, str]] = field(default_factory=list)  # EDF+ (edfio)

    def data(self, i: int) -> np.ndarray:
        """Signal ``i`` in physical units; what the reader tolerated on the way is added to
        ``warnings`` (one line each)."""
        d = self._data[i]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = np.asarray(d() if callable(d) else d, dtype=np.float64)
        self._note(caught)
        return x

    def _note(self, caught) -> None:
        for w in caught:
            line = " ".join(str(w.message).split())[:200]
            if line not in self.warnings:
                self.warnings.append(line)


def read_signals(path: Path) -> EdfSignals:
    """The data signals of ``path`` (physical units, per-signal rates)."""
    import edfio

    try:
        with path.open("rb") as f:
            if f.read(1) == b"\xff":  # BDF (24-bit): edfio reads EDF only
                return _lenient(path)
    except OSError as exc:
        raise EdfReadError(f"{path}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # a hostile header: one line, never a traceback
        why = (str(exc).splitlines() or [type(exc).__name__])[0].removeprefix(f"{path}: ")
        raise EdfReadError(f"{path}: not a readable EDF/BDF file: {why[:200]}") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            edf = edfio.read_edf(path)
        sigs = [s for s in edf.signals if s.label.strip().lower() not in ANNOTATION_LABELS]
        out = EdfSignals(
            [s.label.strip() for s in sigs],
            [float(s.sampling_frequency) for s in sigs],
            [lambda s=s: s.data for s in sigs],
        )
        out._note(caught)
        out.annotations = [(a.onset, a.duration or 0.0, a.text) for a in edf.annotations]
        return out
    except Exception as exc:  # edfio raises many types for files out of spec
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    try:
        out = _lenient(path)
    except Exception as exc:  # a hostile header: one line, never a traceback
        why = (str(exc).splitlines() or [type(exc).__name__])[0].removeprefix(f"{path}: ")
        raise EdfReadError(f"{path}: not a readable EDF/BDF file: {why[:200]}") from None
    out.warnings.insert(0, f"{path.name} is out of the EDF spec ({first}); read leniently")
    return out


def _field(raw: bytes, what: str, path: Path) -> str:
    return raw.decode("latin-1").strip()


def _number(text: str, what: str, path: Path) -> float:
    try:
        v = float(text.replace(",", "."))
    except ValueError:
        raise EdfReadError(f"{path}: header field {what} is not a number ({text!r})") from None
    if not np.isfinite(v):
        raise EdfReadError(f"{path}: header field {what} is not finite ({text!r})")
    return v


def _lenient(path: Path) -> EdfSignals:
    raw = path.read_bytes()
    if len(raw) < 256:
        raise EdfReadError(f"{path}: shorter than an EDF header ({len(raw)} bytes)")
    bdf = raw[:1] == b"\xff"
    width = 3 if bdf else 2
    header_bytes = int(_number(_field(raw[184:192], "", path), "header bytes", path))
    ns = int(_number(_field(raw[252:256], "", path), "number of signals", path))
    if not 0 < ns <= 4096:
        raise EdfReadError(f"{path}: number of signals {ns} is out of range")
    if len(raw) < 256 * (ns + 1):
        raise EdfReadError(f"{path}: header cut short ({len(raw)} bytes for {ns} signals)")
    warnings: list[str] = []
    if header_bytes != 256 * (ns + 1):
        warnings.append(f"header size field says {header_bytes}, {256 * (ns + 1)} used")
    n_rec = int(_number(_field(raw[236:244], "", path), "number of records", path))
    duration = _number(_field(raw[244:252], "", path), "record duration", path)
    if duration <= 0:
        raise EdfReadError(f"{path}: record duration {duration:g} s is not positive")

    def column(offset: int, size: int) -> list[str]:
        base = 256 + offset * ns
        return [_field(raw[base + i * size : base + (i + 1) * size], "", path) for i in range(ns)]

    labels = column(0, 16)
    pmin = [_number(t, "physical minimum", path) for t in column(104 * 1, 8)]
    pmax = [_number(t, "physical maximum", path) for t in column(112, 8)]
    dmin = [_number(t, "digital minimum", path) for t in column(120, 8)]
    dmax = [_number(t, "digital maximum", path) for t in column(128, 8)]
    nsamp = [int(_number(t, "samples per record", path)) for t in column(216, 8)]
    if any(n <= 0 or n > 10_000_000 for n in nsamp):
        raise EdfReadError(f"{path}: a signal has {min(nsamp)} samples per record")
    rec_bytes = width * sum(nsamp)
    body = len(raw) - 256 * (ns + 1)
    whole = body // rec_bytes
    if n_rec < 0 or n_rec != whole:
        warnings.append(f"record count field says {n_rec}, the file holds {whole} whole records")
        n_rec = whole
    if n_rec == 0:
        raise EdfReadError(f"{path}: no whole data record")
    dt = np.dtype("<i2") if not bdf else np.dtype("u1")
    block = np.frombuffer(raw, dtype=dt, count=n_rec * rec_bytes // dt.itemsize,
                          offset=256 * (ns + 1))  # fmt: skip
    if bdf:
        b = block.reshape(-1, 3).astype(np.int32)
        block = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 8  # signed 24-bit
    block = block.reshape(n_rec, sum(nsamp))
    starts = np.cumsum([0, *nsamp])
    keep = [i for i in range(ns) if labels[i].lower() not in ANNOTATION_LABELS]
    data, rates = [], []
    for i in keep:
        digital = block[:, starts[i] : starts[i + 1]].reshape(-1).astype(np.float64)
        if dmax[i] == dmin[i] or pmax[i] == pmin[i]:
            warnings.append(f"{labels[i]!r}: empty digital or physical range, digital values used")
            data.append(digital)
        else:
            gain = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i])
            if gain < 0:
                warnings.append(f"{labels[i]!r}: inverted range (physical max < min) kept")
            data.append((digital - dmin[i]) * gain + pmin[i])
        rates.append(nsamp[i] / duration)
    if duration != round(duration):
        warnings.append(f"record duration {duration:g} s is not a whole second")
    return EdfSignals([labels[i] for i in keep], rates, data, warnings)
