"""Both feature chains: any chunking (per stream, interleaved) == the batch reference, many
devices in one call == each alone, and a snapshot mid-stream resumes exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices import load_device
from edge.features import (
    EpochPipeline,
    FramePipeline,
    reference_epoch_features,
    reference_frame_features,
)
from edge.ops.chain import Chain, FrameAssembler
from tests.streaming import through_npz

ANNE = load_device("anne").input("mamba")
PSG = load_device("psg").input("ulw_sleepnet")
# Features are log magnitudes; log turns a 1e-11 absolute difference on a near-zero ACC
# magnitude into ~1e-6, so features are compared as magnitudes: |exp(a) - exp(b)| <= 1e-9.
MAG_TOL = 1e-9


def anne_recording(seconds: float, n_dev: int, seed: int, temp_jitter: bool = True):
    rng = np.random.default_rng(seed)
    rec, times = {}, {}
    profile = load_device("anne")
    for name, spec in profile.streams.items():
        n = int(seconds * spec.rate_hz)
        rec[name] = rng.standard_normal((n_dev, spec.n_axes, n)) + (33.0 if "temp" in name else 0)
        if spec.timing == "timestamped":
            jitter = rng.uniform(-0.3, 0.3, n) if temp_jitter else 0.0
            times[name] = np.arange(n) + 0.4 + jitter
    return rec, times


def interleaved_schedule(rec: dict, data: st.DataObject, max_chunk_s: float = 7.0):
    """A random interleaving of per-stream chunks (empty and one-sample chunks included)."""
    profile = load_device("anne") if "ecg" in rec else load_device("psg")
    pos = dict.fromkeys(rec, 0)
    schedule = []
    names = sorted(rec)
    for _ in range(80):  # bounded: whatever is left afterwards goes in one chunk per stream
        if all(pos[k] >= rec[k].shape[-1] for k in names):
            break
        k = data.draw(st.sampled_from(names))
        rate = profile.streams[k].rate_hz
        n = data.draw(st.one_of(st.just(0), st.just(1), st.integers(0, int(max_chunk_s * rate))))
        a = pos[k]
        b = min(a + n, rec[k].shape[-1])
        pos[k] = b
        schedule.append((k, a, b))
    schedule += [(k, pos[k], rec[k].shape[-1]) for k in names if pos[k] < rec[k].shape[-1]]
    return schedule


def run_frames(rec, times, schedule, restore_at=None):
    pipe = FramePipeline(ANNE)
    outs = []
    for i, (k, a, b) in enumerate(schedule):
        if restore_at == i:
            snap = through_npz(pipe.snapshot())
            pipe = FramePipeline(ANNE)
            pipe.restore(snap)
        outs.append(pipe.push(k, rec[k][..., a:b], times[k][a:b] if k in times else None))
    outs.append(pipe.flush())
    return np.concatenate(outs, axis=-1)


def assert_features_equal(y, ref):
    assert y.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    logs = slice(2, None)  # rows 0-1 are temperatures (not logs): compared directly
    np.testing.assert_allclose(
        np.exp(np.nan_to_num(y[..., logs, :])),
        np.exp(np.nan_to_num(ref[..., logs, :])),
        rtol=0,
        atol=MAG_TOL,
    )
    np.testing.assert_allclose(y[..., :2, :], ref[..., :2, :], rtol=0, atol=1e-12)


@given(st.integers(0, 2**32 - 1), st.floats(3.0, 45.0), st.data())
def test_anne_chain_equals_reference(seed, seconds, data):
    rec, times = anne_recording(seconds, 1, seed)
    y = run_frames(rec, times, interleaved_schedule(rec, data))
    ref = reference_frame_features(ANNE, rec, times)
    assert y.shape[-2] == 140
    assert_features_equal(y, ref)


@given(st.integers(0, 2**32 - 1), st.data())
def test_anne_chain_snapshot_restore(seed, data):
    rec, times = anne_recording(25.0, 1, seed)
    schedule = interleaved_schedule(rec, data)
    at = data.draw(st.integers(0, len(schedule)))
    np.testing.assert_array_equal(
        run_frames(rec, times, schedule), run_frames(rec, times, schedule, restore_at=at)
    )


def test_anne_many_devices_equal_each_alone():
    rec, times = anne_recording(40.0, 3, seed=7)
    schedule = [
        (k, a, min(a + int(spec.rate_hz), rec[k].shape[-1]))
        for a_s in range(41)
        for k, spec in load_device("anne").streams.items()
        for a in [int(a_s * spec.rate_hz)]
        if a < rec[k].shape[-1]
    ]
    together = run_frames(rec, times, schedule)
    for d in range(3):
        alone = run_frames({k: v[d : d + 1] for k, v in rec.items()}, times, schedule)
        assert_features_equal(together[d : d + 1], alone)  # BLAS GEMM vs GEMV rounding only


def test_anne_feature_layout():
    """140 = 2 temperatures + 51 ECG + 51 PPG + 3 x 12 ACC, one frame per second."""
    assert [(f.stream.name, f.width) for f in ANNE.features] == [
        ("temp_chest", 1),
        ("temp_finger", 1),
        ("ecg", 51),
        ("ppg", 51),
        ("acc", 36),
    ]
    rec, times = anne_recording(60.0, 1, seed=1)
    ref = reference_frame_features(ANNE, rec, times)
    assert ref.shape == (1, 140, 60)
    # temperatures start at grid 0 before the first sample (t=0.1..0.7): left empty (NaN)
    assert np.isnan(ref[0, 0, 0]) and np.isfinite(ref[0, 0, 1:59]).all()


def psg_recording(seconds: float, seed: int):
    rng = np.random.default_rng(seed)
    profile = load_device("psg")
    return {
        k: 20 * rng.standard_normal((1, int(seconds * s.rate_hz)))
        for k, s in profile.streams.items()
    }


def run_epochs(rec, schedule, restore_at=None, start_s=0.0):
    pipe = EpochPipeline(PSG, start_s)
    outs = []
    for i, (k, a, b) in enumerate(schedule):
        if restore_at == i:
            snap = through_npz(pipe.snapshot())
            pipe = EpochPipeline(PSG, start_s)
            pipe.restore(snap)
        outs.append(pipe.push(k, rec[k][..., a:b]))
    outs.append(pipe.flush())
    return outs


@given(st.integers(0, 2**32 - 1), st.floats(1.0, 130.0), st.data())
def test_psg_chain_equals_reference(seed, seconds, data):
    rec = psg_recording(seconds, seed)
    outs = run_epochs(rec, interleaved_schedule(rec, data, max_chunk_s=40))
    y = np.concatenate([o.data for o in outs])
    ref = reference_epoch_features(PSG, rec)
    assert y.shape == ref.shape and y.shape[1:] == (4, 3000)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.concatenate([o.index for o in outs]), np.arange(len(y)))


@given(st.integers(0, 2**32 - 1), st.data())
def test_psg_chain_with_emg_gaps_equals_reference(seed, data):
    """A gap inside an epoch of the 1-Hz EMG envelope is interpolated before the per-epoch FFT
    resampling (an FFT would spread one NaN over the epoch), in the stream as in the batch."""
    rec = psg_recording(95.0, seed)
    a = data.draw(st.integers(0, 75))  # inside the three whole epochs (0-90 s)
    rec["emg"][..., a : a + data.draw(st.integers(1, 10))] = np.nan
    outs = run_epochs(rec, interleaved_schedule(rec, data, max_chunk_s=40))
    y = np.concatenate([o.data for o in outs])
    ref = reference_epoch_features(PSG, rec)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9)
    assert np.isfinite(y[:3, 3]).all()  # the whole epochs keep some EMG samples: no NaN left


@given(st.integers(0, 2**32 - 1), st.data())
def test_psg_chain_snapshot_restore(seed, data):
    rec = psg_recording(95.0, seed)
    schedule = interleaved_schedule(rec, data, max_chunk_s=40)
    at = data.draw(st.integers(0, len(schedule)))
    a = np.concatenate([o.data for o in run_epochs(rec, schedule)])
    b = np.concatenate([o.data for o in run_epochs(rec, schedule, restore_at=at)])
    np.testing.assert_array_equal(a, b)


def test_psg_many_devices_equal_each_alone():
    rng = np.random.default_rng(5)
    profile = load_device("psg")
    rec = {
        k: 20 * rng.standard_normal((3, 1, int(100 * s.rate_hz)))
        for k, s in profile.streams.items()
    }  # 100 s for 3 devices, channels arriving unevenly
    sched = [
        (k, a, min(a + int(7 * s.rate_hz), rec[k].shape[-1]))
        for k, s in profile.streams.items()
        for a in range(0, rec[k].shape[-1], int(7 * s.rate_hz))
    ]
    together = np.concatenate([o.data for o in run_epochs(rec, sched)])
    assert together.shape == (4, 3, 4, 3000)
    for d in range(3):
        alone = np.concatenate(
            [o.data for o in run_epochs({k: v[d] for k, v in rec.items()}, sched)]
        )
        np.testing.assert_allclose(together[:, d], alone, rtol=0, atol=1e-12)


def test_psg_late_start_lands_on_the_aasm_grid():
    rec = psg_recording(70.0, seed=3)
    sched = [(k, 0, v.shape[-1]) for k, v in rec.items()]
    outs = run_epochs(rec, sched, start_s=45.0)  # recording starts 45 s into the session
    index = np.concatenate([o.index for o in outs])
    partial = np.concatenate([o.partial for o in outs])
    # session seconds 45..115: epoch 1 (30-60 s) and epoch 3 (90-120 s) are partly covered
    assert index.tolist() == [1, 2, 3] and partial.tolist() == [True, False, True]
    ref = reference_epoch_features(PSG, rec, start_s=45.0)
    np.testing.assert_allclose(np.concatenate([o.data for o in outs]), ref, atol=1e-9)


def test_pipelines_reject_bad_input():
    pipe = FramePipeline(ANNE)
    with pytest.raises(KeyError, match="unknown stream"):
        pipe.push("eeg", np.zeros((1, 1, 10)))
    with pytest.raises(ValueError, match="3 axes"):
        pipe.push("acc", np.zeros((1, 10)))
    with pytest.raises(ValueError, match="timestamped"):
        pipe.push("temp_chest", np.zeros((1, 1, 3)))
    with pytest.raises(KeyError, match="unknown stream"):
        EpochPipeline(PSG).push("ecg", np.zeros((1, 10)))


def test_chain_and_assembler_contracts():
    with pytest.raises(ValueError, match="at least one"):
        Chain([])
    with pytest.raises(ValueError, match="duplicate"):
        FrameAssembler([("a", 1), ("a", 2)])
    asm = FrameAssembler([("a", 1), ("b", 2)])
    with pytest.raises(ValueError, match="width"):
        asm.add("a", np.zeros((2, 3)))
    asm.add("a", np.ones((1, 3)))
    assert asm.ready() is None  # b has delivered nothing yet
    asm.add("b", np.ones((2, 2)))
    assert asm.ready().shape == (3, 2)
    tail = asm.flush()  # a has one more frame; b ended early → NaN, never zeros
    assert tail.shape == (3, 1) and np.isnan(tail[1:]).all() and tail[0, 0] == 1


def punch_gaps(rec: dict, data: st.DataObject, profile) -> dict:
    """Random lost frames (NaN runs a whole number of frames long, short and long ones) in
    every regular stream of every device, as the assembler places them."""
    out = {}
    for name, x in rec.items():
        spec = profile.streams[name]
        y = x.copy()
        if spec.timing == "regular":
            f = spec.wire.frame_samples
            for d in range(x.shape[0]):
                for _ in range(data.draw(st.integers(0, 5))):
                    start = data.draw(st.integers(0, x.shape[-1] // f)) * f
                    y[d, :, start : start + f * data.draw(st.integers(1, 12))] = np.nan
        out[name] = y
    return out


def expected_bridged(spec, rec, times, n_frames: int) -> dict[str, np.ndarray]:
    """Batch reference of the bridged fraction per frame: each slot's first step run alone."""
    from edge.ops.grid import BRIDGED, reference_grid

    out = {}
    for f in spec.features:
        step = f.steps[0]
        x = rec[f.stream.name]
        if step.op == "grid":
            _, flags = reference_grid(times[f.stream.name], x, *step._grid_args())
            mask, per = np.broadcast_to(flags == BRIDGED, x.shape[:-2] + flags.shape), 1
        else:
            from edge.ops.bridge import reference_bridge

            mask = reference_bridge(x, *step._bridge_args())[1].any(axis=-2)
            per = round(f.stream.rate_hz / spec.frame_hz)
        mask = mask[..., : n_frames * per]
        pad = n_frames * per - mask.shape[-1]
        mask = np.concatenate((mask, np.zeros((*mask.shape[:-1], pad), bool)), axis=-1)
        out[f.stream.name] = mask.reshape(*mask.shape[:-1], n_frames, per).mean(axis=-1)
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(5.0, 40.0), st.data())
def test_anne_chain_with_lost_frames_equals_reference_and_counts_bridged(seed, seconds, data):
    """Lost frames (short gaps bridged, long ones left as gaps) and lost temperature samples,
    two devices, any interleaved chunking and a snapshot anywhere: the features equal the
    batch reference and each frame's bridged fraction per stream equals the reference's."""
    profile = load_device("anne")
    rec, times = anne_recording(seconds, 2, seed)
    rec = punch_gaps(rec, data, profile)
    for name in ("temp_chest", "temp_finger"):  # lost 1 Hz samples: dropped timestamps
        keep = np.ones(times[name].size, bool)
        keep[data.draw(st.lists(st.integers(0, keep.size - 1), max_size=4))] = False
        rec[name], times[name] = rec[name][..., keep], times[name][keep]
    schedule = interleaved_schedule(rec, data)
    at = data.draw(st.none() | st.integers(0, len(schedule)))
    pipe = FramePipeline(ANNE)
    outs, bridged = [], {n: [] for n in ("ecg", "ppg", "acc", "temp_chest", "temp_finger")}
    for i, item in enumerate([*schedule, None]):
        if at == i:
            snap = through_npz(pipe.snapshot())
            pipe = FramePipeline(ANNE)
            pipe.restore(snap)
        if item is None:
            out = pipe.flush()
        else:
            k, a, b = item
            out = pipe.push(k, rec[k][..., a:b], times[k][a:b] if k in times else None)
        outs.append(out)
        for n in bridged:
            bridged[n].append(pipe.last_bridged.get(n, np.zeros((2, out.shape[-1]))))
    y = np.concatenate(outs, axis=-1)
    assert_features_equal(y, reference_frame_features(ANNE, rec, times))
    want = expected_bridged(ANNE, rec, times, y.shape[-1])
    for n, parts in bridged.items():
        np.testing.assert_allclose(np.concatenate(parts, axis=-1), want[n], atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.data())
def test_psg_chain_with_lost_frames_equals_reference_and_counts_bridged(seed, data):
    profile = load_device("psg")
    rng = np.random.default_rng(seed)
    rec = {n: rng.standard_normal((2, 1, int(95 * s.rate_hz))) for n, s in profile.streams.items()}
    rec = punch_gaps(rec, data, profile)
    pipe = EpochPipeline(PSG)
    got = []
    for k, a, b in interleaved_schedule(rec, data):
        got.append(pipe.push(k, rec[k][..., a:b]))
    got.append(pipe.flush())
    data_ = np.concatenate([e.data for e in got if len(e)])
    np.testing.assert_allclose(
        np.nan_to_num(data_), np.nan_to_num(reference_epoch_features(PSG, rec)), atol=1e-9
    )
    from edge.ops.bridge import reference_bridge

    bridged = np.concatenate([e.bridged for e in got if len(e)])  # (E, devices, channels)
    for c, ch in enumerate(PSG.channels):
        mask = reference_bridge(rec[ch.stream.name], *ch.steps[0]._bridge_args())[1][:, 0]
        per = int(ch.stream.rate_hz * 30)
        n = bridged.shape[0]
        padded = np.zeros((2, n * per), bool)
        padded[:, : min(mask.shape[-1], n * per)] = mask[:, : n * per]
        np.testing.assert_allclose(
            bridged[..., c], padded.reshape(2, n, per).mean(axis=-1).T, atol=1e-12
        )
