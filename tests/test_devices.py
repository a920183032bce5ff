"""Device descriptors are data, validated on load with errors that say where and why."""

import textwrap

import pytest

from edge.devices import DeviceError, available_devices, load_device

GOOD = """
schema = 1
name = "toy"
[[streams]]
name = "ecg"
rate_hz = 250
axes = ["ecg"]
unit = "mV"
[inputs.m]
layout = "frames"
frame_hz = 1
[[inputs.m.features]]
stream = "ecg"
steps = [{ op = "resample", rate = 100 }, { op = "stft", n_fft = 100, hop = 100, bins = 5 }]
"""


def write(tmp_path, text):
    p = tmp_path / "dev.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_bundled_devices_load():
    assert {"anne", "psg"} <= set(available_devices())
    anne = load_device("anne")
    assert {s: (v.rate_hz, v.n_axes) for s, v in anne.streams.items()} == {
        "ecg": (512, 1),
        "ppg": (128, 1),
        "acc": (210, 3),
        "temp_chest": (1, 1),
        "temp_finger": (1, 1),
    }
    assert anne.input("mamba").width == 140
    psg = load_device("psg")
    ulw = psg.input("ulw_sleepnet")
    assert [c.stream.name for c in ulw.channels] == ["eeg_fpz_cz", "eeg_pz_oz", "eog", "emg"]
    assert (ulw.epoch_len, psg.streams["emg"].rate_hz) == (3000, 1.0)


def test_a_descriptor_file_by_path(tmp_path):
    dev = load_device(write(tmp_path, GOOD))
    assert dev.input("m").width == 5


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("schema = 1", "schema = 9", "unsupported schema"),
        ("rate_hz = 250", "rate_hz = -5", "positive number"),
        ("rate_hz = 250", 'rate_hz = "fast"', "wrong type"),
        ('axes = ["ecg"]', "axes = []", "non-empty list"),
        ('op = "resample"', 'op = "wavelet"', "unknown op 'wavelet'"),
        ("bins = 5", "bins = 5, hopp = 3", "unknown parameters"),
        ('stream = "ecg"', 'stream = "eeg"', "unknown stream 'eeg'"),
        ("hop = 100", "hop = 50", "chain ends at 2.0 Hz"),
        ('layout = "frames"', 'layout = "tiles"', "'layout' must be"),
        ("rate = 100 }", "rate = 0 }", "rates must be positive"),
        ('name = "ecg"', 'name = "ecg"\ntiming = "sometimes"', "'timing' must be one of"),
    ],
)
def test_invalid_descriptors_fail_clearly(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(DeviceError, match=message):
        load_device(write(tmp_path, GOOD.replace(old, new, 1)))


def test_more_invalid_cases(tmp_path):
    with pytest.raises(DeviceError, match="unknown device 'nope'; known devices: anne"):
        load_device("nope")
    with pytest.raises(DeviceError, match="not valid TOML"):
        load_device(write(tmp_path, "schema = = 1"))
    with pytest.raises(DeviceError, match="cannot read"):
        load_device(tmp_path / "missing.toml")
    dup = GOOD.replace(
        "[inputs.m]", '[[streams]]\nname = "ecg"\nrate_hz = 1\naxes = ["a"]\nunit = "x"\n[inputs.m]'
    )
    with pytest.raises(DeviceError, match="duplicate stream name 'ecg'"):
        load_device(write(tmp_path, dup))
    timed = GOOD.replace('unit = "mV"', 'unit = "mV"\ntiming = "timestamped"')
    with pytest.raises(DeviceError, match="must start with 'grid'"):
        load_device(write(tmp_path, timed))
    with pytest.raises(DeviceError, match="no model input 'x'"):
        load_device("anne").input("x")


def test_epoch_inputs_validate_rates(tmp_path):
    text = GOOD.split("[inputs.m]")[0] + textwrap.dedent("""
        [inputs.e]
        layout = "epochs"
        rate_hz = 100
        epoch_s = 30
        [[inputs.e.channels]]
        stream = "ecg"
    """)
    with pytest.raises(DeviceError, match="add a 'resample' step"):
        load_device(write(tmp_path, text))
    ok = text + 'steps = [{ op = "resample", rate = 100 }]\n'
    assert load_device(write(tmp_path, ok)).input("e").epoch_len == 3000
    bad = text + 'epoch_resample = "linear"\n'
    with pytest.raises(DeviceError, match="epoch_resample must be 'fft'"):
        load_device(write(tmp_path, bad))
