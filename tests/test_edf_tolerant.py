"""Tolerant EDF/BDF reading: out-of-spec files read with a warning, or one clear refusal."""

from pathlib import Path

import edfio
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.edf_read import EdfReadError, read_signals

EXCERPT3 = Path(__file__).parents[2] / "shared/data/dreams_spindles/original/excerpt3.edf"


def good_edf(path, seconds=4):
    x = np.linspace(-100, 100, 100 * seconds)
    edfio.Edf([edfio.EdfSignal(x, 100, label="EEG C3-M2", physical_range=(-200.0, 200.0))]).write(
        path
    )
    return path.read_bytes()


def patch(raw: bytes, offset: int, text: str) -> bytes:
    field = text.encode("latin-1")
    return raw[:offset] + field + raw[offset + len(field) :]


@pytest.mark.skipif(not EXCERPT3.exists(), reason="DREAMS excerpt3.edf not on this machine")
def test_real_dreams_excerpt3_is_read():
    edf = read_signals(EXCERPT3)
    assert "C3-A1" in edf.labels and edf.rates[edf.labels.index("C3-A1")] == 50
    assert edf.data(edf.labels.index("C3-A1")).size == 90_000


def test_odd_fields_are_read_with_one_line_warnings(tmp_path):
    raw = good_edf(tmp_path / "a.edf")
    ns = 1
    bad = patch(raw, 236, "-1      ")  # record count unknown
    bad = patch(bad, 256 + 120 * ns, "0       ")  # digital min
    bad = patch(bad, 256 + 128 * ns, "0       ")  # digital max == min
    (tmp_path / "b.edf").write_bytes(bad)
    edf = read_signals(tmp_path / "b.edf")
    assert edf.labels == ["EEG C3-M2"] and edf.data(0).size == 400
    assert edf.warnings and all("\n" not in w for w in edf.warnings)
    assert any("records" in w for w in edf.warnings) and any("igital" in w for w in edf.warnings)


def test_half_second_records(tmp_path):
    raw = good_edf(tmp_path / "a.edf")
    (tmp_path / "h.edf").write_bytes(patch(raw, 244, "0.5     "))
    edf = read_signals(tmp_path / "h.edf")
    assert edf.rates == [200.0]  # 100 samples per 0.5-s record


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.integers(0, 511), st.binary(min_size=1, max_size=8)), max_size=6),
       st.integers(0, 2000), st.booleans())  # fmt: skip
def test_broken_headers_never_traceback(tmp_path, edits, cut, bdf):
    raw = bytearray(good_edf(tmp_path / "a.edf"))
    if bdf:  # the same header as a BDF: our own parse, 24-bit samples
        raw[0] = 0xFF
    for offset, data in edits:
        raw[offset : offset + len(data)] = data
    raw = bytes(raw[: max(0, len(raw) - cut)])
    (tmp_path / "f.edf").write_bytes(raw)
    try:
        edf = read_signals(tmp_path / "f.edf")
    except EdfReadError as exc:
        msg = str(exc)
        assert "\n" not in msg and "not a readable EDF/BDF file" in msg
        return
    for i in range(len(edf.labels)):
        assert edf.data(i).ndim == 1
    assert all("\n" not in w for w in edf.warnings)


def test_bdf_24_bit_is_read(tmp_path):
    """A BDF (24-bit samples; edfio reads EDF only) through the header parse of our own."""
    n = 50
    digital = np.array([-8_388_608, -1, 0, 1, 8_388_607] * (n // 5), dtype=np.int64)
    hdr = b"\xffBIOSEMI" + b" " * 80 + b" " * 80 + b"01.01.2501.00.00"
    hdr += f"{512:<8}".encode() + b"24BIT".ljust(44) + b"1       " + b"1       " + b"1   "
    fields = [("EEG C3-M2", 16), ("", 80), ("uV", 8), ("-1000", 8), ("1000", 8)]
    fields += [("-8388608", 8), ("8388607", 8), ("", 80), (str(n), 8), ("", 32)]
    hdr += b"".join(v.ljust(w).encode() for v, w in fields)
    u = digital & 0xFFFFFF
    body = np.stack([u & 0xFF, (u >> 8) & 0xFF, u >> 16], axis=1).astype(np.uint8).tobytes()
    (tmp_path / "x.bdf").write_bytes(hdr + body)
    edf = read_signals(tmp_path / "x.bdf")
    assert edf.labels == ["EEG C3-M2"] and edf.rates == [50.0]
    gain = 2000 / (8_388_607 + 8_388_608)
    np.testing.assert_allclose(edf.data(0), (digital + 8_388_608) * gain - 1000)
    assert edf.warnings == []  # a BDF in spec needs no excuse
