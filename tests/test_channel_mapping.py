"""Recordings from any lab: channel mapping, other rates, the EMG envelope rule, reduced input."""

import json
import subprocess
import sys
from pathlib import Path

import edfio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices import load_device
from edge.ops.envelope import EmgEnvelope, reference_envelope
from firmware_sim.channel_map import norm_label, parse_channels, resolve_channels
from firmware_sim.recordings import RecordingError, open_recording

PSG = load_device("psg")
EXCERPT3 = Path(__file__).parents[2] / "shared/data/dreams_spindles/original/excerpt3.edf"


def write_edf(path, channels, seconds=60, seed=0):
    rng = np.random.default_rng(seed)
    sigs = [
        edfio.EdfSignal(40 * rng.standard_normal(seconds * fs), fs, label=label,
                        physical_range=(-500.0, 500.0))
        for label, fs in channels
    ]  # fmt: skip
    edfio.Edf(sigs).write(path)
    return edfio.read_edf(path)


def test_labels_match_loosely():
    assert norm_label("EEG C3-A2") == norm_label("c3-m2") == "c3-m2"
    assert norm_label("EOG1-A1") == "eog1-m1" and norm_label(" EEG Fpz-Cz ") == "fpz-cz"
    assert parse_channels("eeg_fpz_cz=C4-M1, eog=E1-M2") == {"eeg_fpz_cz": "C4-M1", "eog": "E1-M2"}
    with pytest.raises(ValueError, match="STREAM=LABEL"):
        parse_channels("eeg_fpz_cz")


def test_aasm_montage_with_a1_a2_labels_and_raw_emg(tmp_path):
    path = tmp_path / "clinic.edf"
    edf = write_edf(path, [("EEG C4-A1", 256), ("EEG O2-A1", 256), ("EOG E1-A2", 256),
                           ("Chin EMG", 200), ("ECG", 256)])  # fmt: skip
    rec = open_recording(path, "psg", montage="aasm")
    assert rec.channels == {"eeg_fpz_cz": "EEG C4-A1", "eeg_pz_oz": "EEG O2-A1",
                            "eog": "EOG E1-A2", "emg": "Chin EMG"}  # fmt: skip
    assert rec.signals["eeg_fpz_cz"].shape == (1, 6000)  # 256 Hz -> 100 Hz
    emg = edf.get_signal("Chin EMG").data
    np.testing.assert_allclose(rec.signals["emg"][0], reference_envelope(emg, 200, 1), atol=1e-9)
    assert rec.signals["emg"].shape == (1, 60)


def test_explicit_channels_override_and_errors_list_the_labels(tmp_path):
    path = tmp_path / "x.edf"
    write_edf(path, [("C3-M2", 100), ("C4-M1", 100), ("EEG C4-M1", 100)])
    rec = open_recording(path, "psg", channels="eeg_fpz_cz=C3-M2")
    assert set(rec.signals) == {"eeg_fpz_cz"}  # the others are absent, not zero
    with pytest.raises(RecordingError, match=r"no channel 'F4-M1'.*labels here: 'C3-M2'"):
        open_recording(path, "psg", channels="eeg_fpz_cz=F4-M1")
    with pytest.raises(RecordingError, match="ambiguous"):
        open_recording(path, "psg", channels="eeg_pz_oz=C4-A1")  # loosely both C4-M1 labels
    with pytest.raises(RecordingError, match="has no stream 'eeg'"):
        open_recording(path, "psg", channels="eeg=C3-M2")
    with pytest.raises(RecordingError, match="unknown montage 'nope'.*aasm"):
        open_recording(path, "psg", montage="nope")
    with pytest.raises(ValueError, match="labels here"):
        resolve_channels(["ECG"], PSG, "f.edf")


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([50, 128, 200, 256, 500]),
    st.lists(st.integers(1, 700), min_size=1, max_size=12),
    st.integers(0, 2**31 - 1),
)
def test_emg_envelope_streams_equal_batch(fs, cuts, seed):
    x = np.random.default_rng(seed).standard_normal((2, 7 * fs + 13)) * 20
    op = EmgEnvelope(fs, 1.0)
    out, i = [], 0
    for c in cuts * 50:
        if i >= x.shape[1]:
            break
        out.append(op.push(x[:, i : i + c]))
        if len(out) == 3:  # snapshot/restore mid-stream changes nothing
            snap = op.snapshot()
            op = EmgEnvelope(fs, 1.0)
            op.restore(snap)
        i += c
    if i < x.shape[1]:
        out.append(op.push(x[:, i:]))
    out.append(op.flush())
    np.testing.assert_allclose(np.concatenate(out, -1), reference_envelope(x, fs), atol=1e-9)


def test_envelope_rule_is_rms_of_the_highpassed_second():
    fs = 200
    t = np.arange(10 * fs) / fs
    x = 30 * np.sin(2 * np.pi * 60 * t) + 500 * np.sin(2 * np.pi * 0.3 * t)  # drift is removed
    env = reference_envelope(x, fs)
    np.testing.assert_allclose(env[2:], 30 / np.sqrt(2), rtol=0.03)
    with pytest.raises(ValueError, match="too slow"):
        EmgEnvelope(10, 1)


def edge_run(*args):
    cmd = [sys.executable, "-m", "edge.cli", "--plain", "--backend", "numpy", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_single_eeg_at_200_hz_is_staged_reduced(tmp_path):
    """One real-rate EEG, no EOG or EMG: every epoch staged, flagged reduced, not an error."""
    path = tmp_path / "one.edf"
    write_edf(path, [("EEG C4-M1", 200)], seconds=150)
    out = edge_run("--source", "replay", "--file", str(path), "--montage", "aasm",
                   "--out", str(tmp_path / "o"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "absent: eeg_pz_oz, eog, emg" in out.stdout
    assert "5 epochs staged with reduced input" in out.stdout
    epochs = [json.loads(x) for x in (tmp_path / "o/epochs.jsonl").read_text().splitlines()]
    assert len(epochs) == 5
    assert all(e["stage"] >= 0 and "reduced" in e["flags"] for e in epochs)


def test_bad_mapping_is_one_line_exit_2(tmp_path):
    path = tmp_path / "x.edf"
    write_edf(path, [("ECG", 100)], seconds=30)
    out = edge_run("--source", "replay", "--file", str(path), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "labels here: 'ECG'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.skipif(not EXCERPT3.exists(), reason="DREAMS excerpt3.edf not on this machine")
def test_excerpt3_end_to_end_with_its_own_scoring(tmp_path):
    out = edge_run("--source", "replay", "--file", str(EXCERPT3), "--montage", "aasm",
                   "--out", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "eeg_fpz_cz=C3-A1, eeg_pz_oz=O1-A1, eog=EOG1-A1, emg=EMG1" in out.stdout
    run = json.loads((tmp_path / "run.json").read_text())
    ref = run["reference"]
    assert ref["epochs"] == 60 and 0 <= ref["agreement"] <= 1 and -1 <= ref["kappa"] <= 1
    assert run["config"]["duration"] is None and run["config"]["loss"] == 0.0
    assert run["config"]["montage"] == "aasm"


def test_firmware_sim_file_source_takes_a_montage(tmp_path):
    from edge.devices.receiver import Receiver
    from firmware_sim.cli import _prepare, build_parser
    from firmware_sim.sources import SourceError

    path = tmp_path / "clinic.edf"
    write_edf(path, [("F4-M1", 200), ("E1-M2", 128)], seconds=10)
    args = build_parser().parse_args(
        ["--device", "psg", "--source", str(path), "--montage", "aasm"]
    )
    _, _, deliveries, _ = _prepare(args)
    rx = Receiver(PSG)
    got = [r for d in deliveries for r in rx.feed(d.frame.data)] + rx.flush()
    per = {}
    for r in got:
        per[r.frame.stream] = per.get(r.frame.stream, 0) + r.frame.samples.shape[1]
    assert per == {"eeg_fpz_cz": 1000, "eog": 1000}  # both at the device's 100 Hz
    bad = build_parser().parse_args(["--device", "psg", "--source", str(path), "--montage", "x"])
    with pytest.raises(SourceError, match="unknown montage 'x'"):
        _prepare(bad)


def test_hypnogram_flag_writes_the_reference_into_run_json(tmp_path):
    path = tmp_path / "night.edf"
    write_edf(path, [("EEG Fpz-Cz", 100), ("EEG Pz-Oz", 100)], seconds=120)
    hyp = tmp_path / "scoring.tsv"
    hyp.write_text("stage\nW\nN2\n?\nN2\n")
    out = edge_run("--source", "replay", "--file", str(path), "--hypnogram", str(hyp),
                   "--out", str(tmp_path / "o"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    run = json.loads((tmp_path / "o/run.json").read_text())
    epochs = [json.loads(x) for x in (tmp_path / "o/epochs.jsonl").read_text().splitlines()]
    got = [e["stage"] for e in epochs]
    want = [0, 2, -1, 2]
    both = [(a, b) for a, b in zip(want, got, strict=True) if a >= 0 and b >= 0]
    assert run["reference"]["epochs"] == len(both) == 3
    assert run["reference"]["agreement"] == round(sum(a == b for a, b in both) / 3, 4)
    assert run["config"]["hypnogram"] == str(hyp)
