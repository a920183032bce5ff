"""Replays decode many frames per call (``Receiver.feed_many``, ``Session.feed_many``): whatever
the batching and whatever the link did, the result equals frame-by-frame receiving — samples
bit for bit, every counter, every staged epoch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices import load_device
from edge.devices.bulk import decode_payloads, parse, valid_for
from edge.devices.codec import INT_RANGE, Frame, StreamCodec, decode, encode
from edge.devices.receiver import FrameRun, Receiver
from edge.devices.samples import SampleAssembler
from firmware_sim.device import VirtualDevice
from firmware_sim.faults import FaultPlan, apply_faults
from firmware_sim.resynth import walch_night
from tests.streaming import pieces

ANNE = load_device("anne")
NIGHT = walch_night("46343", max_epochs=4).recording  # bundled night, first 2 minutes


def batches(items: list, cuts: list[int]) -> list[list]:
    """``items`` cut at ``cuts`` (taken modulo the length, in any order)."""
    points = sorted(c % (len(items) + 1) for c in cuts)
    return [items[s] for s in pieces(len(items), points)]


def corrupt(data: bytes, how: int) -> bytes:
    """One malformed frame: truncated, too long, a bad length, an unknown stream or format."""
    b = bytearray(data)
    if how == 0:
        return bytes(b[:9])
    if how == 1:
        return bytes(b + bytes(250))
    if how == 2:
        return bytes(b[:-1])
    if how == 3:
        b[0] = 99
    else:
        b[1] = 0x0F
    return bytes(b)


def per_stream(items, profile=ANNE) -> dict[str, tuple[np.ndarray, list[int], list[int]]]:
    """Released items → per stream: samples, frame numbers, device times (runs expanded)."""
    out: dict[str, list] = {name: [[], [], []] for name in profile.streams}
    for item in items:
        if isinstance(item, FrameRun):
            frames = item.frames()
            numbers = list(range(item.number, item.number + len(frames)))
        else:
            frames, numbers = [item.frame], [item.number]
        for f, k in zip(frames, numbers, strict=True):
            out[f.stream][0].append(f.samples)
            out[f.stream][1].append(k)
            out[f.stream][2].append(f.t_device_ns)
    return {
        name: (np.concatenate(s, axis=1) if s else np.zeros((0, 0)), k, t)
        for name, (s, k, t) in out.items()
    }


@st.composite
def codec_frames(draw):
    """Frames of one stream in every layout: int16/int24 raw and delta, float32, sensor off."""
    fmt = draw(st.sampled_from(["int16", "int24", "float32"]))
    axes = draw(st.integers(1, 3))
    codec = StreamCodec("s", 7, axes, fmt, draw(st.sampled_from([1.0, 0.001])), -2.0)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frames = []
    for k in range(draw(st.integers(1, 12))):
        n = int(rng.integers(1, codec.max_samples() + 1))
        if fmt == "float32":
            samples = rng.normal(size=(axes, n)).astype(np.float32).astype(np.float64)
        else:
            lo, hi = INT_RANGE[codec.fmt]
            step = int(rng.choice([3, 300, hi]))
            ints = np.clip(np.cumsum(rng.integers(-step, step + 1, (axes, n)), 1), lo, hi)
            samples = ints * codec.scale + codec.offset
        off = bool(rng.random() < 0.2)
        frames.append(encode(codec, k, 10**9 * k, samples, bool(rng.random() < 0.7), off))
    return codec, frames


@given(codec_frames())
def test_bulk_decode_is_bit_identical_to_decoding_each_frame(case):
    codec, frames = case
    batch = parse(frames)
    idx = np.flatnonzero(valid_for(batch, codec))
    assert list(idx) == list(range(len(frames)))
    samples, n, off = decode_payloads(batch, idx, codec)
    one_by_one = [decode({codec.code: codec}, f) for f in frames]
    assert all(isinstance(f, Frame) for f in one_by_one)
    expected = np.concatenate([f.samples for f in one_by_one], axis=1)
    np.testing.assert_array_equal(samples, expected)  # NaN where the sensor was off
    assert list(n) == [f.n for f in one_by_one]
    assert list(off) == [f.sensor_off for f in one_by_one]


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 2**31),
    st.sampled_from(["clean", "lossy", "everything"]),
    st.lists(st.integers(0, 10**6), max_size=6),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 4)), max_size=4),
)
def test_feed_many_equals_frame_by_frame_under_faults(seed, link, cuts, bad):
    """Random batchings of a faulted link (loss, duplicates, reordering, disconnects, clock
    drift, leads off, malformed frames): same samples, numbers, times and counters."""
    plan = {
        "clean": FaultPlan(),
        "lossy": FaultPlan(seed=seed, loss=0.03),
        "everything": FaultPlan(
            seed=seed, loss=0.02, duplicate=0.02, reorder=0.03, disconnect_s=5.0,
            disconnect_every_s=40.0,
        ),
    }[link]  # fmt: skip
    dev = VirtualDevice.from_recording(
        ANNE, NIGHT, drift_ppm=40.0, sensor_off={"ppg": [(20.0, 35.0)]}
    )
    frames = [d.frame.data for d in apply_faults(list(dev.frames()), plan)[0]]
    for at, how in bad:
        frames.insert(at % (len(frames) + 1), corrupt(frames[at % len(frames)], how))
    one = Receiver(ANNE)
    single = [r for f in frames for r in one.feed(f)] + one.flush()
    many = Receiver(ANNE)
    bulk = [r for b in batches(frames, cuts) for r in many.feed_many(b)] + many.flush()
    a, b = per_stream(single), per_stream(bulk)
    for name in ANNE.streams:
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=name)
        assert a[name][1:] == b[name][1:], name
    assert one.counts() == many.counts()
    assert one.rejected == many.rejected
    if link == "clean" and not bad:
        assert any(isinstance(r, FrameRun) for r in bulk)  # the fast path did the work


def test_irregular_run_on_the_grid_goes_frame_by_frame():
    """A run whose frames leave a hole on the sample grid (a device clock jump) is placed
    exactly as frame-by-frame placement places it: NaN for the hole, overlap dropped."""
    rng = np.random.default_rng(3)
    codec = ANNE.streams["ppg"].codec()
    starts = [0, 64, 128 + 10, 192 + 10 - 5]  # a 10-sample hole, then a 5-sample overlap
    frames = [
        encode(codec, k, int(s / 128 * 1e9), rng.normal(size=(1, 64)) * 1e3)
        for k, s in enumerate(starts)
    ]
    one, many = Receiver(ANNE), Receiver(ANNE)
    grid_one, grid_many = SampleAssembler(ANNE), SampleAssembler(ANNE)
    x_one = np.concatenate([grid_one.add(r).samples for f in frames for r in one.feed(f)], 1)
    (run,) = many.feed_many(frames)
    x_many = grid_many.add_run(run).samples
    np.testing.assert_array_equal(x_one, x_many)
    assert grid_many.gap_samples["ppg"] == 10 and grid_many.overlap_samples["ppg"] == 5
    assert grid_one.state() == grid_many.state()


@pytest.fixture(scope="module")
def staged_both_ways():
    """One faulted ANNE half hour staged frame by frame and in random batches."""
    from types import SimpleNamespace

    from edge.cli import MODELS_DIR, _stager
    from edge.session import Session

    rec = walch_night("46343", max_epochs=60).recording
    dev = VirtualDevice.from_recording(ANNE, rec, drift_ppm=-30.0, sensor_off={"ecg": [(300, 420)]})
    plan = FaultPlan(seed=5, loss=0.01, duplicate=0.01, reorder=0.02)
    frames = [d.frame.data for d in apply_faults(list(dev.frames()), plan)[0]]
    manifest = MODELS_DIR / "mamba_anne" / "mamba_anne.json"
    args = SimpleNamespace(backend="onnxruntime", precision="fp32", threads=1)

    def session():
        stager, spec = _stager(manifest, ANNE, args)
        return Session(ANNE, spec, stager)

    one, many = session(), session()
    a = [r for f in frames for r in one.feed(f)] + one.finish(rec.duration_s)
    cuts = np.random.default_rng(0).integers(0, len(frames), 40).tolist()
    b = [r for chunk in batches(frames, cuts) for r in many.feed_many(chunk)]
    return a, b + many.finish(rec.duration_s), one, many


def test_session_feed_many_stages_the_same_epochs(staged_both_ways):
    a, b, one, many = staged_both_ways
    assert [r.index for r in b] == list(range(60))  # every epoch once
    assert a == b  # records, probabilities included, are identical
    assert one.counts() == many.counts() and one.counts()["lost"] > 0
