"""Virtual device → seeded faults → receiver: the receiver's counts equal what was injected."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices import load_device
from edge.devices.receiver import Receiver
from firmware_sim.device import START, STOP, VirtualDevice
from firmware_sim.faults import FaultPlan, apply_faults
from firmware_sim.resynth import walch_night

ANNE = load_device("anne")


def device(seconds: float = 120.0, **kw) -> VirtualDevice:
    rec = walch_night("46343", max_epochs=int(-(-seconds // 30))).recording  # bundled night
    return VirtualDevice.from_recording(ANNE, rec, **kw)


def receive(deliveries):
    rx = Receiver(ANNE)
    released = []
    for d in deliveries:
        released += rx.feed(d.frame.data)
    return rx, released + rx.flush()


def test_clean_link_delivers_every_sample_in_order():
    dev = device(60.0)
    frames = list(dev.frames())
    assert all(len(f.data) <= 244 for f in frames)
    rx, released = receive(apply_faults(frames, FaultPlan())[0])
    for name, x in dev.signals.items():
        got = np.concatenate([r.frame.samples for r in released if r.frame.stream == name], 1)
        codec = ANNE.streams[name].codec()
        np.testing.assert_allclose(got, x, atol=codec.scale / 2 + 1e-12)  # ADC rounding only
    assert rx.counts()["lost"] == 0 and not rx.rejected


@settings(max_examples=15)
@given(
    st.integers(0, 2**31),
    st.floats(0, 0.05),
    st.floats(0, 0.05),
    st.floats(0, 0.05),
    st.booleans(),
    st.sampled_from([0.0, 0.5, 2.0]),
)
def test_receiver_counts_match_injected_faults(seed, loss, dup, reorder, disconnects, burst):
    dev = device(90.0)
    plan = FaultPlan(
        seed=seed,
        loss=loss,
        duplicate=dup,
        reorder=reorder,
        reorder_max=3,
        disconnect_s=4.0 if disconnects else 0.0,
        disconnect_every_s=30.0 if disconnects else 0.0,
        burst_s=burst,
    )
    frames = list(dev.frames())
    deliveries, truth = apply_faults(frames, plan)
    rx, released = receive(deliveries)
    for name, tracker in rx.trackers.items():
        sent = [f.seq for f in frames if f.stream == name]
        got = [d.frame.seq for d in deliveries if d.frame.stream == name]
        trailing = sum(1 for s in sent if s > max(got))  # lost after the last arrival: unseeable
        leading = sum(1 for s in sent if s < min(got))  # lost before the first: unseeable
        assert tracker.stats.lost == truth.lost[name] - trailing - leading, name
        assert tracker.stats.duplicates == truth.duplicated[name], name
        assert tracker.stats.reordered == truth.reordered[name], name
        numbers = [r.number for r in released if r.frame.stream == name]
        assert numbers == sorted(set(numbers))  # in order, never twice
    assert not rx.rejected


def test_drift_shows_in_device_timestamps():
    """A clock 50 ppm fast stamps 50 ppm more seconds than truly pass between two frames."""
    dev = device(600.0, drift_ppm=50.0)
    ecg = [f for f in dev.frames() if f.stream == "ecg"]
    rx = Receiver(ANNE)
    first = rx.feed(ecg[0].data)[0].frame
    rx.feed(ecg[-2].data)
    last = rx.flush()[-1].frame
    dt_device = (last.t_device_ns - first.t_device_ns) / 1e9
    dt_true = ecg[-2].t_send_s - ecg[0].t_send_s  # both frames hold 64 samples
    assert dt_device / dt_true == pytest.approx(1 + 50e-6, rel=1e-7)


def test_leads_off_window_is_flagged_not_silenced():
    dev = device(120.0, sensor_off={"ecg": [(30.0, 60.0)]})
    rx, released = receive(apply_faults(list(dev.frames()), FaultPlan())[0])
    off = [r for r in released if r.frame.stream == "ecg" and r.frame.sensor_off]
    assert rx.trackers["ecg"].stats.sensor_off == len(off)
    assert 30 * 512 / 64 <= len(off) <= 30 * 512 / 64 + 2
    assert all(np.isnan(r.frame.samples).all() for r in off)


def test_control_point_starts_and_stops_streams():
    dev = device(10.0)
    dev.control(bytes([START, 1]))  # ECG only
    assert {f.stream for f in dev.frames()} == {"ecg"}
    dev.control(bytes([START, 0xFF]))
    dev.control(bytes([STOP, 3]))  # all but ACC
    assert {f.stream for f in dev.frames()} == set(ANNE.streams) - {"acc"}
    with pytest.raises(ValueError, match="unknown stream code"):
        dev.control(bytes([START, 77]))
    with pytest.raises(ValueError, match="bad control command"):
        dev.control(b"\x09")


def test_bad_fault_plans_and_flags_fail_clearly():
    with pytest.raises(ValueError, match="loss must be a probability"):
        FaultPlan(loss=1.5)
    with pytest.raises(ValueError, match="disconnect_s < disconnect_every_s"):
        FaultPlan(disconnect_s=10, disconnect_every_s=5)
    from tests.commands import run

    for args, text in [
        (
            ("--leads-off", "eeg:1-2", "--broker", "127.0.0.1:1"),
            "cannot reach MQTT broker",
        ),  # the broker is checked first
        (("--disconnect", "5"), "use N/M"),
        (("--leads-off", "ecg:ten-20"), "use STREAM:START-STOP"),
    ]:
        out = run("firmware_sim.cli", *args, timeout=60)
        assert out.returncode == 2 and text in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_leads_off_for_a_missing_stream_is_refused():
    from firmware_sim.cli import _prepare, build_parser
    from firmware_sim.sources import SourceError

    args = build_parser().parse_args(["--duration", "30", "--leads-off", "eeg:1-2"])
    with pytest.raises(SourceError, match="has no stream 'eeg'"):
        _prepare(args)
