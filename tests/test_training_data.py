"""Training loaders for the real raw formats, on EDF files written in the test."""

import numpy as np
import pytest

from firmware_sim.recordings import read_hypnogram
from firmware_sim.resynth import data_root
from tests.test_recordings import write_psg_edf
from training.data.psg import dreams_excerpt, sleep_edf_pair


def write_hypnogram(path, spans):
    import edfio

    edfio.Edf([], annotations=[edfio.EdfAnnotation(o, d, t) for o, d, t in spans]).write(path)


def test_sleep_edf_pair_gives_labelled_epochs_through_the_runtime_chain(tmp_path):
    """A PSG EDF and an EDF+ hypnogram written here (Sleep-EDF naming): epochs [E, 4, 3000] at
    100 Hz (EMG FFT-resampled per epoch), labelled from the hypnogram (R&K 4 → N3), cropped to
    the sleep period ± 30 min, unscored and movement epochs dropped."""
    minutes = [
        (60, "Sleep stage W"),
        (20, "Sleep stage 1"),
        (30, "Sleep stage 2"),
        (10, "Movement time"),
        (20, "Sleep stage 4"),
        (20, "Sleep stage R"),
        (40, "Sleep stage W"),
    ]
    spans, t = [], 0
    for m, text in minutes:
        spans.append((t, m * 60, text))
        t += m * 60
    write_hypnogram(tmp_path / "SC9991EC-Hypnogram.edf", spans)
    write_psg_edf(tmp_path / "SC9991E0-PSG.edf", seconds=t)
    e = sleep_edf_pair(tmp_path / "SC9991E0-PSG.edf")
    want = np.concatenate(
        [
            np.full(60, 0),
            np.full(40, 1),
            np.full(60, 2),
            np.full(40, 3),
            np.full(40, 4),
            np.full(60, 0),
        ]
    )  # 30 min (60 epochs) each side
    np.testing.assert_array_equal(e.y, want)
    assert e.x.shape == (want.size, 4, 3000) and e.x.dtype == np.float32
    assert np.isfinite(e.x).all()
    stages = read_hypnogram(tmp_path / "SC9991EC-Hypnogram.edf")
    assert stages.size == t // 30 and (stages == -1).sum() == 20  # movement time


def test_a_psg_without_hypnogram_is_refused(tmp_path):
    write_psg_edf(tmp_path / "XX0000-PSG.edf", seconds=60)
    with pytest.raises(ValueError, match="no hypnogram"):
        sleep_edf_pair(tmp_path / "XX0000-PSG.edf")


def test_dreams_excerpt_resampled_to_100_hz():
    x, y = dreams_excerpt(data_root() / "dreams_spindles" / "excerpt2.npz")  # recorded at 200 Hz
    assert x.shape[1] == 3000 and x.shape[0] == y.size > 20
    assert set(np.unique(y)) <= {0, 1, 2, 3, 4}
