"""Recorded files played by a virtual device: EDF written with edfio, CSV exports, NPZ."""

import edfio
import numpy as np
import pytest

from edge.devices import load_device
from edge.devices.receiver import Receiver
from firmware_sim.device import VirtualDevice
from firmware_sim.recordings import RecordingError, load_recording

PSG = load_device("psg")
ANNE = load_device("anne")


def write_psg_edf(path, seconds=120, seed=0, eeg_rate=100):
    rng = np.random.default_rng(seed)
    sig = [
        edfio.EdfSignal(
            40 * rng.standard_normal(seconds * eeg_rate),
            eeg_rate,
            label="EEG Fpz-Cz",
            physical_dimension="uV",
            physical_range=(-500.0, 500.0),
        ),
        edfio.EdfSignal(
            30 * rng.standard_normal(seconds * 100),
            100,
            label="EEG Pz-Oz",
            physical_dimension="uV",
            physical_range=(-500.0, 500.0),
        ),
        edfio.EdfSignal(
            60 * rng.standard_normal(seconds * 100),
            100,
            label="EOG horizontal",
            physical_dimension="uV",
            physical_range=(-1000.0, 1000.0),
        ),
        edfio.EdfSignal(
            np.abs(5 + rng.standard_normal(seconds)),
            1,
            label="EMG submental",
            physical_dimension="uV",
            physical_range=(0.0, 100.0),
        ),
        edfio.EdfSignal(
            rng.standard_normal(seconds), 1, label="Resp oro-nasal", physical_range=(-10.0, 10.0)
        ),
    ]
    edfio.Edf(sig).write(path)
    return edfio.read_edf(path)


def test_edf_replay_reproduces_its_samples(tmp_path):
    path = tmp_path / "SC4001E0-PSG.edf"
    edf = write_psg_edf(path)
    rec = load_recording(path, PSG)
    assert set(rec.signals) == {"eeg_fpz_cz", "eeg_pz_oz", "eog", "emg"}  # Resp: no stream
    for name, label in [("eeg_fpz_cz", "EEG Fpz-Cz"), ("emg", "EMG submental")]:
        np.testing.assert_array_equal(rec.signals[name][0], edf.get_signal(label).data)
    # through the wire: the device's 0.1 µV ADC step is the only change
    dev = VirtualDevice.from_recording(PSG, rec)
    rx = Receiver(PSG)
    released = [r for f in dev.frames() for r in rx.feed(f.data)] + rx.flush()
    for name, x in rec.signals.items():
        got = np.concatenate([r.frame.samples for r in released if r.frame.stream == name], 1)
        np.testing.assert_allclose(got, x, rtol=0, atol=0.05 + 1e-9)
    assert rx.counts()["lost"] == 0


def test_csv_export_directory(tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(512 * 20) / 512
    np.savetxt(
        tmp_path / "ecg.csv",
        np.c_[t, rng.standard_normal(t.size)],
        delimiter=",",
        header="time_s,ecg_mV",
        comments="",
    )
    tt = np.arange(20) + 0.37
    np.savetxt(
        tmp_path / "temp_chest.csv",
        np.c_[tt, 34 + 0.1 * rng.standard_normal(20)],
        delimiter=",",
        header="time_s,temp_C",
        comments="",
    )
    rec = load_recording(tmp_path, ANNE)
    assert set(rec.signals) == {"ecg", "temp_chest"}
    np.testing.assert_array_equal(rec.times["temp_chest"], tt)
    frames = list(VirtualDevice.from_recording(ANNE, rec).frames())
    temps = [f for f in frames if f.stream == "temp_chest"]
    assert [round(f.t_send_s, 2) for f in temps] == [round(x, 2) for x in tt]


def test_csv_at_another_rate_is_resampled(tmp_path):
    import scipy.signal as sps

    x = np.random.default_rng(3).standard_normal(256 * 8)
    t = np.arange(x.size) / 256
    np.savetxt(tmp_path / "ecg.csv", np.c_[t, x], delimiter=",", header="time_s,ecg", comments="")
    rec = load_recording(tmp_path, ANNE)
    fs = ANNE.streams["ecg"].rate_hz
    np.testing.assert_allclose(rec.signals["ecg"][0], sps.resample_poly(x, fs, 256), atol=1e-9)
    assert rec.times["ecg"].size == rec.signals["ecg"].shape[1]


def test_npz(tmp_path):
    acc = np.random.default_rng(2).standard_normal((3, 2100)) * 0.1
    np.savez(tmp_path / "night.npz", acc=acc)
    rec = load_recording(tmp_path / "night.npz", ANNE)
    np.testing.assert_array_equal(rec.signals["acc"], acc)
    # a single real EEG at its own rate (the DREAMS excerpts: 50 or 200 Hz) on a 100 Hz stream
    import scipy.signal as sps

    eeg = np.random.default_rng(4).standard_normal(200 * 30)
    np.savez(tmp_path / "one.npz", eeg_fpz_cz=eeg, eeg_fpz_cz__rate=200.0)
    rec = load_recording(tmp_path / "one.npz", PSG)
    np.testing.assert_allclose(
        rec.signals["eeg_fpz_cz"][0], sps.resample_poly(eeg, 1, 2), atol=1e-9
    )


def test_other_rate_is_resampled_like_resample_poly(tmp_path):
    """A 200 Hz EEG on a 100 Hz stream: edge's streaming Resampler, equal to the batch
    ``resample_poly`` of the whole channel."""
    import scipy.signal as sps

    path = tmp_path / "fast.edf"
    edf = write_psg_edf(path, seconds=10, eeg_rate=200)
    rec = load_recording(path, PSG)
    want = sps.resample_poly(edf.get_signal("EEG Fpz-Cz").data, 1, 2)
    np.testing.assert_allclose(rec.signals["eeg_fpz_cz"][0], want, atol=1e-9)
    assert rec.signals["eeg_fpz_cz"].shape[1] == 1000


def test_bad_recordings_fail_clearly(tmp_path):
    path = tmp_path / "fast.edf"
    write_psg_edf(path, seconds=10, eeg_rate=200)
    with pytest.raises(RecordingError, match="no channel matches"):
        load_recording(path, ANNE)
    (tmp_path / "junk.edf").write_bytes(b"not an edf")
    with pytest.raises(RecordingError, match="not a readable EDF"):
        load_recording(tmp_path / "junk.edf", PSG)
    with pytest.raises(RecordingError, match="no such file"):
        load_recording(tmp_path / "missing.edf", PSG)
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(RecordingError, match="unknown recording type"):
        load_recording(tmp_path / "x.wav", PSG)
    np.savez(tmp_path / "t.npz", temp_chest=np.ones((1, 5)))
    with pytest.raises(RecordingError, match="needs temp_chest__times"):
        load_recording(tmp_path / "t.npz", ANNE)


def test_sleep_edf_psg_brings_its_real_hypnogram(tmp_path):
    """The loader reads a real Sleep-EDF hypnogram (EDF+ annotations) paired by name with a PSG
    file, and its stages agree with the labels of the same night's band-power record."""
    import shutil

    from firmware_sim.recordings import read_hypnogram
    from firmware_sim.resynth import data_root

    root = data_root() / "sleep_edf"
    shutil.copy(root / "hypnograms" / "SC4001EC-Hypnogram.edf", tmp_path)
    write_psg_edf(tmp_path / "SC4001E0-PSG.edf", seconds=60)
    rec = load_recording(tmp_path / "SC4001E0-PSG.edf", PSG)
    stages = read_hypnogram(tmp_path / "SC4001EC-Hypnogram.edf")
    np.testing.assert_array_equal(rec.stages, stages)
    with np.load(root / "bandpower_features" / "SC4001.npz") as z:
        y, offset = z["y"], int(z["hyp_epoch_offset"])
    scored = y >= 0
    np.testing.assert_array_equal(stages[offset : offset + y.size][scored], y[scored])
    assert set(np.unique(stages)) <= {-1, 0, 1, 2, 3, 4}
