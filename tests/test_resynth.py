"""Resynthesis from the real records in ../shared/data: the waveforms carry each epoch's real
band powers, heart rate and activity, and nothing that depends on the stage label."""

import inspect
import shutil

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from firmware_sim.resynth import cardio, data_root, eeg, mmash_day, sleep_edf_night, walch_night
from firmware_sim.resynth.mmash import MmashRecord, anchored_beats, clock_s, read_csv_gz

EPOCHS = 240  # two hours: enough epochs of every stage, fast enough for the suite


@pytest.mark.parametrize("night", ["SC4001", "SC4102"])
def test_sleep_edf_band_powers_match_the_record(night):
    """Measured with the record's own Welch settings, every band within 4 decades of the
    epoch's delta power (what a Hamming-windowed Welch can resolve) matches: p95 error ≤ 0.05
    decades (12 %), p99 ≤ 0.25. Deeper bands sit at that leakage floor, above their target."""
    n = sleep_edf_night(night, max_epochs=EPOCHS)
    x = n.features["bandpower"]
    for ch, name in enumerate(("eeg_fpz_cz", "eeg_pz_oz", "eog")):
        scale = {"eeg_fpz_cz": 25.0, "eeg_pz_oz": 20.0, "eog": 40.0}[name]
        measured = eeg.band_powers(n.recording.signals[name][0] / scale)
        goal = x[:, ch, :5]
        err = measured - goal
        covered = goal >= goal[:, :1] - 4
        assert covered.mean() > 0.5
        assert np.percentile(np.abs(err[covered]), 95) <= 0.05, name
        assert np.percentile(np.abs(err[covered]), 99) <= 0.25, name
        assert np.median(err[~covered]) >= 0, name
    assert n.stages.shape == (EPOCHS,) and set(np.unique(n.stages)) <= {-1, 0, 1, 2, 3, 4}


def ecg_bpm_per_epoch(sig, fs, n_ep):
    peaks, _ = find_peaks(sig, height=0.5, distance=int(0.3 * fs))
    t = peaks / fs
    out = np.full(n_ep, np.nan)
    for e in range(n_ep):
        b = t[(t >= e * 30) & (t < e * 30 + 30)]
        if b.size > 2:
            out[e] = 60.0 / np.diff(b).mean()
    return out


def test_walch_heart_rate_and_activity_match_the_record():
    """ECG R peaks give each epoch's heart rate within 1 bpm (p95) of the record's; chest ACC
    movement RMS follows each epoch's activity count (0.01 g per count) within 10 % (median)."""
    n = walch_night("1066528", max_epochs=EPOCHS)
    f = n.features
    fs = 512.0
    bpm = ecg_bpm_per_epoch(n.recording.signals["ecg"][0], fs, int(f["epoch"][-1]) + 1)
    err = np.abs(bpm[f["epoch"]] - f["bpm"])
    assert np.nanpercentile(err, 95) <= 1.0 and np.nanmedian(err) <= 0.3
    acc = n.recording.signals["acc"]
    sos = butter(2, 0.3, "highpass", fs=210, output="sos")  # drop gravity, keep movement
    moving = sosfiltfilt(sos, acc, axis=-1)
    n_ep = acc.shape[1] // 6300
    rms = np.sqrt((moving[:, : n_ep * 6300].reshape(3, n_ep, 6300) ** 2).mean(-1).sum(0))
    active = f["count"] > 1.0
    ratio = rms[f["epoch"][active]] / (0.01 * f["count"][active])
    assert active.sum() > 5 and abs(np.median(ratio) - 1) < 0.1
    assert np.corrcoef(rms[f["epoch"]], f["count"])[0, 1] > 0.9


def test_mmash_beats_are_the_real_beats():
    n = mmash_day("user_1", hours=0.5)
    beats = n.features["beats"]
    got = ecg_bpm_per_epoch(n.recording.signals["ecg"][0], 512.0, 60)
    want = np.array(
        [60.0 / np.diff(beats[(beats >= e * 30) & (beats < e * 30 + 30)]).mean() for e in range(60)]
    )
    assert np.nanpercentile(np.abs(got - want), 95) <= 1.0
    assert n.stages is None  # MMASH has sleep periods, not stages


def test_no_generator_takes_a_label():
    for fn in (
        eeg.synth_channel,
        cardio.beats_from_hr,
        cardio.anne_signals,
        cardio.ecg,
        cardio.ppg,
        cardio.chest_acc,
    ):
        params = set(inspect.signature(fn).parameters)
        assert not params & {"y", "stage", "stages", "label", "labels", "hypnogram"}, fn


def test_signals_do_not_change_when_the_labels_do(tmp_path):
    """Permute the stage labels in a copy of each record: the waveforms are byte-identical."""
    root = data_root()
    for sub, name, fn in [
        ("sleep_edf/bandpower_features", "SC4001", sleep_edf_night),
        ("sleep_accel_walch/features", "1066528", walch_night),
    ]:
        (tmp_path / sub).mkdir(parents=True)
        with np.load(root / sub / f"{name}.npz") as z:
            d = {k: z[k] for k in z.files}
        d["y"] = np.random.default_rng(0).permutation(d["y"])
        np.savez(tmp_path / sub / f"{name}.npz", **d)
        real = fn(name, max_epochs=60)
        fake = fn(name, max_epochs=60, root=tmp_path)
        for k, v in real.recording.signals.items():
            assert np.array_equal(v, fake.recording.signals[k]), (name, k)
        assert not np.array_equal(real.stages, fake.stages)
        shutil.rmtree(tmp_path / sub.split("/")[0])


def _epoch_hr(beats: np.ndarray, start: float, n: int) -> np.ndarray:
    e = ((beats - start) // 30).astype(np.int64)
    ok = (e >= 0) & (e < n)
    count = np.bincount(e[ok], minlength=n)[:n]
    span = np.bincount(e[ok][1:], weights=np.diff(beats[ok]), minlength=n)[:n]
    return np.where(count >= 3, 60.0 * count / np.maximum(span, 1e-9), np.nan)


def test_mmash_beats_sit_on_the_wall_clock_all_day():
    """The strap's RR file comes in ~25-s bursts with ~8-s holes: anchored beats keep each
    epoch's heart rate on the ActiGraph's own HR column over the whole day (an independent
    clock), where summing the intervals drifts by hours and loses it."""
    base = data_root() / "mmash" / "user_14"
    record = MmashRecord.read(base)
    act = read_csv_gz(base / "Actigraph.csv.gz")
    t, hr = clock_s(act["day"], act["time"]), np.array(act["HR"], dtype=np.float64)
    start, n = t[0], int((t[-1] - t[0]) // 30)
    e = ((t - start) // 30).astype(np.int64)
    ok = (e < n) & (hr > 0)
    truth = np.bincount(e[ok], hr[ok], n) / np.maximum(np.bincount(e[ok], minlength=n), 1)
    ours = record.epoch_features(start, n)["hr"]
    m = np.isfinite(ours) & (truth > 0)
    assert m.sum() > 0.9 * n
    assert np.corrcoef(ours[m], truth[m])[0, 1] > 0.95
    assert np.median(np.abs(ours[m] - truth[m])) < 1.5
    rr = read_csv_gz(base / "RR.csv.gz")
    ibi = np.array(rr["ibi_s"], dtype=np.float64)
    summed = _epoch_hr(np.cumsum(ibi) + clock_s(rr["day"][:1], rr["time"][:1])[0], start, n)
    m2 = np.isfinite(summed) & (truth > 0)
    assert np.corrcoef(summed[m2], truth[m2])[0, 1] < 0.5  # the naive reading fails this test
    assert 0.6 < record.observed.mean() < 0.9  # about a quarter of the day is filled in
    gaps = np.diff(record.beats)
    assert gaps.min() >= 0.25 and gaps.max() <= 2.0


def test_anchored_beats_recover_a_known_beat_train():
    """A smooth 50–80 bpm beat train reported as MMASH does (whole-second stamps, 25 s on, 8 s
    off, two artefact detections): real beats land within 0.5 s of the truth, every hole is
    filled at the local rate, artefacts are dropped."""
    t_true = np.cumsum(60.0 / (65 + 15 * np.sin(np.arange(3000) / 300.0)))
    ibi = np.diff(t_true, prepend=t_true[0] - 0.9)
    shown = (t_true % 33.0) < 25.0
    ibi[1000], ibi[2000] = 0.27, 0.31  # extra detections
    idx = np.flatnonzero(shown)
    beats, real = anchored_beats(ibi[idx], np.floor(t_true[idx] + 1000.0) - 1000.0)
    truth_real = t_true[idx][~np.isin(idx, [1000, 2000])]
    assert real.sum() == truth_real.size
    assert np.abs(beats[real] - truth_real).max() <= 0.5
    assert abs(beats.size - np.searchsorted(t_true, beats[-1] + 0.1)) <= 3
    assert np.diff(beats).min() > 0.6 and np.diff(beats).max() < 1.3


def test_anchored_beats_refuse_empty_or_broken_input():
    """An RR file with no beats, stamps that do not match the intervals, or non-numbers give a
    clear error, not numpy's."""
    with pytest.raises(ValueError, match="at least one"):
        anchored_beats(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="as many beat stamps as intervals"):
        anchored_beats(np.ones(5), np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        anchored_beats(np.array([0.8, np.nan]), np.array([0.0, 1.0]))


def test_clock_columns_parse_to_seconds_from_day_one():
    """hh:mm and hh:mm:ss(.f); a day below 1 (users 8 and 9's -29) is the day after the last."""
    got = clock_s(["1", "1", "2", "-29"], ["10:11:12", "23:59", "1:02:03.5", "00:00:01"])
    np.testing.assert_array_equal(got, [36672.0, 86340.0, 90123.5, 2 * 86400.0 + 1.0])


def test_mmash_sleep_periods_and_clock_quirks():
    """Out-of-bed dates written as the in-bed date wrap to the next day; users 8 and 9's
    day -29 rows are the next day; every period's length is the file's own minutes in bed."""
    for user in sorted(p.name for p in (data_root() / "mmash").glob("user_*")):
        base = data_root() / "mmash" / user
        record = MmashRecord.read(base)
        assert (np.diff(record.activity_t) > 0).all(), user
        sleep = read_csv_gz(base / "sleep.csv.gz")
        if not sleep.get("Onset Time"):
            assert record.periods.shape == (0, 2)
            continue
        minutes = np.array(sleep["Total Minutes in Bed"], float)
        latency = np.array(sleep["Latency"], float)
        span = (record.periods[:, 1] - record.periods[:, 0]) / 60
        assert np.abs(span - (minutes - latency)).max() <= 2, user
        assert record.activity_t[0] < record.periods[0, 0] < record.activity_t[-1], user
    n = mmash_day("user_5", before_bed_h=1.0, after_bed_h=0.5)
    asleep = n.features["asleep"]
    assert asleep[:120].sum() == 0 and asleep[120:125].all()  # awake the hour before bed
    assert asleep[120 : 120 + 812].all() and asleep[-60:].sum() == 0  # 406 min, then up
