"""The real-EEG benchmark (benchmarks/real_eeg.py): its --quick smoke run through edge-run's
replay path, beside YASA and the ceiling, and its streaming resampling equal to the batch one."""

import functools
import importlib.util
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ops.resample import reference_resample
from tests.commands import run_json


@functools.cache
def _benchmark():
    spec = importlib.util.spec_from_file_location("real_eeg", "benchmarks/real_eeg.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_eeg"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_quick_json_stages_every_labelled_epoch_beside_yasa_and_the_ceiling():
    r = run_json("benchmarks/real_eeg.py", "--quick", "--json", module=False, timeout=600)
    assert {"model", "recordings", "epochs", "accuracy", "kappa", "peers", "ceiling"} <= set(r)
    rows = {row["name"]: row for row in r["recordings"]}
    assert set(rows) == {"excerpt1", "excerpt3"}
    assert (rows["excerpt1"]["fs_hz"], rows["excerpt3"]["fs_hz"]) == (100.0, 50.0)
    # every scored 30-s label of the two excerpts (60 each), every one staged by the replay
    assert r["epochs"] == sum(row["epochs"] for row in rows.values()) == 120
    assert r["unscored"] == 0 and sum(map(sum, r["confusion"])) == 120
    assert r["ceiling"]["n_epochs"] == 120 and -1 <= r["ceiling"]["kappa"] <= 1
    yasa = r["peers"]["yasa"]
    if importlib.util.find_spec("yasa") is None:
        assert "skipped" in yasa
    else:
        assert yasa["n_epochs"] == 120 and yasa["unscored"] == 0 and -1 <= yasa["kappa"] <= 1
        assert all("yasa" in row for row in rows.values())
    for row in rows.values():
        assert 0 <= row["model"]["accuracy"] <= 1 and 0 <= row["ceiling"]["accuracy"] <= 1
    # the whole PSG excerpt (EDF, read with edfio): staged with its EOG as well, apart
    (full,) = r["full_psg"]
    assert full["name"] == "excerpt3.edf" and full["channels"] == ["C3-A1", "EOG1-A1"]
    assert full["epochs"] == 60 and 0 <= full["model"]["accuracy"] <= 1


@settings(max_examples=25, deadline=None)
@given(
    fs=st.sampled_from([50.0, 128.0, 200.0, 250.0, 256.0, 512.0]),
    seconds=st.integers(3, 12),
    seed=st.integers(0, 2**16),
)
def test_streamed_resampling_equals_the_batch_reference(fs, seconds, seed):
    x = np.random.default_rng(seed).standard_normal(int(fs * seconds)) * 40
    got = _benchmark().to_device_rate(x, fs)
    want = reference_resample(x, fs, 100.0)[: len(got)]
    assert len(got) == seconds * 100
    np.testing.assert_allclose(got, want, atol=1e-9)
