"""The open frame format: round trips, a decoder fuzz, and the receiver's ordering and counts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.devices import load_device
from edge.devices.codec import (
    HEADER_SIZE,
    INT_RANGE,
    MAX_FRAME,
    REASONS,
    Frame,
    Rejected,
    StreamCodec,
    bundle,
    decode,
    encode,
    gateway,
    unbundle,
    ungateway,
)
from edge.devices.receiver import Receiver, SequenceTracker

ANNE = load_device("anne")


@st.composite
def codec_and_ints(draw):
    fmt = draw(st.sampled_from(["int16", "int24"]))
    axes = draw(st.integers(1, 3))
    codec = StreamCodec(
        "s",
        draw(st.integers(0, 255)),
        axes,
        fmt,
        draw(st.sampled_from([1.0, 0.001, 1 / 4096])),
        draw(st.sampled_from([0.0, -5.0])),
    )
    n = draw(st.integers(1, codec.max_samples()))
    lo, hi = INT_RANGE[codec.fmt]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["smooth", "noise", "extreme"]))
    if kind == "smooth":
        ints = np.clip(np.cumsum(rng.integers(-30, 31, (axes, n)), axis=1), lo, hi)
    elif kind == "noise":
        ints = rng.integers(lo, hi + 1, (axes, n))
    else:
        ints = rng.choice([lo, hi, 0], (axes, n))
    return codec, ints


@given(
    codec_and_ints(),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**64 - 1),
    st.booleans(),
    st.booleans(),
)
def test_round_trip_is_exact_on_the_integer_grid(case, seq, t_ns, compress, off):
    codec, ints = case
    samples = ints * codec.scale + codec.offset
    data = encode(codec, seq, t_ns, samples, compress=compress, sensor_off=off)
    assert HEADER_SIZE < len(data) <= MAX_FRAME
    frame = decode({codec.code: codec}, data)
    assert isinstance(frame, Frame)
    assert (frame.seq, frame.t_device_ns, frame.n, frame.sensor_off) == (
        seq,
        t_ns,
        ints.shape[1],
        off,
    )
    if off:
        assert np.isnan(frame.samples).all()
    else:
        np.testing.assert_array_equal(frame.samples, ints * codec.scale + codec.offset)


@given(st.integers(0, 2**32 - 1))
def test_float32_and_quantisation(seed):
    rng = np.random.default_rng(seed)
    f32 = StreamCodec("t", 9, 2, "float32", 1.0)
    x = rng.standard_normal((2, 20)).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(decode({9: f32}, encode(f32, 1, 2, x)).samples, x)
    ecg = ANNE.streams["ecg"].codec()
    y = rng.standard_normal((1, 64))
    got = decode({ecg.code: ecg}, encode(ecg, 1, 2, y)).samples
    assert np.abs(got - y).max() <= ecg.scale / 2 + 1e-12  # half an LSB


def test_delta_compression_pays_on_smooth_signals():
    acc = ANNE.streams["acc"].codec()
    x = np.cumsum(np.random.default_rng(0).integers(-8, 9, (3, 36)), axis=1) * acc.scale
    assert len(encode(acc, 0, 0, x)) < 0.5 * len(encode(acc, 0, 0, x, compress=False))


CODECS = ANNE.codecs()
VALID = [encode(c, 7, 10**9, np.zeros((c.n_axes, 3))) for c in CODECS.values()]


def check_never_raises(data: bytes) -> None:
    item = decode(CODECS, data)
    assert isinstance(item, Frame | Rejected)
    if isinstance(item, Rejected):
        assert item.reason in REASONS and item.detail


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    check_never_raises(data)


@given(st.sampled_from(VALID), st.data())
def test_fuzz_mutated_frames(frame, data):
    b = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "grow", "set"]))
        if op == "flip" and b:
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del b[data.draw(st.integers(0, len(b))) :]
        elif op == "grow":
            b += data.draw(st.binary(min_size=1, max_size=40))
        elif b:
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    check_never_raises(bytes(b))


def test_each_rejection_reason_is_reachable():
    ecg = CODECS[1]
    good = encode(ecg, 1, 0, np.zeros((1, 4)), compress=False)
    cases = {
        "truncated header": good[:10],
        "unknown stream": bytes([99]) + good[1:],
        "unknown sample format": good[:1] + bytes([0x0F]) + good[2:],
        "format mismatch": good[:1] + bytes([0]) + good[2:],
        "empty frame": good[:12] + bytes([0]) + good[13:],
        "axis count mismatch": good[:13] + bytes([3]) + good[14:],
        "bad length": good[:-1],
        "frame too long": good + bytes(300),
        "bad delta width": encode(ecg, 1, 0, np.arange(4.0)[None] * 0.001)[:17]
        + bytes([40])
        + bytes(10),
    }
    assert set(cases) == set(REASONS)
    for reason, data in cases.items():
        item = decode(CODECS, data)
        assert isinstance(item, Rejected) and item.reason == reason, (reason, item)


def frames_for(stream: str, numbers, t0_ns: int = 0):
    spec = ANNE.streams[stream]
    per = int(spec.wire.frame_samples / spec.rate_hz * 1e9)
    codec = spec.codec()
    return [
        encode(
            codec,
            n % 65536,
            t0_ns + n * per,
            np.full((spec.n_axes, spec.wire.frame_samples), n * codec.scale),
        )
        for n in numbers
    ]


@given(st.data())
def test_receiver_orders_and_counts(data):
    n = data.draw(st.integers(1, 300))
    start = data.draw(st.integers(0, 65535))
    numbers = list(range(start, start + n))
    dropped = set(data.draw(st.lists(st.sampled_from(numbers[1:] or numbers), max_size=20)))
    dropped.discard(numbers[0])
    sent = [k for k in numbers if k not in dropped]
    dups = data.draw(st.lists(st.sampled_from(sent), max_size=10))
    rest = sent[1:] + dups
    rest.sort(key=lambda k: k + data.draw(st.floats(0, 8)))  # displaced by < 8 < window
    order = sent[:1] + rest  # numbering starts at the first frame received
    rx = Receiver(ANNE, window_s=2.0)  # 16 frames of ECG
    released = []
    for b in frames_for("ecg", order):
        released += rx.feed(b)
    released += rx.flush()
    got = [r.number + start for r in released]
    assert got == sorted(set(sent))  # in order, each once
    c = rx.counts()
    assert c["lost"] == len(dropped - {k for k in dropped if k > max(sent)})
    assert c["duplicates"] == len(dups)
    assert sum(r.lost_before for r in released) == c["lost"]


def test_sequence_wraps_and_regression_is_rejected():
    tr = SequenceTracker(window=4)
    codec = CODECS[4]
    mk = [
        decode(CODECS, encode(codec, s % 65536, 0, np.zeros((1, 1)))) for s in range(65533, 65540)
    ]
    out = []
    for f in mk:
        out += tr.accept(f)[0]
    assert [r.number for r in out] == list(range(7))
    assert tr.accept(mk[0]) == ([], None)  # recent duplicate: dropped quietly
    assert tr.stats.duplicates == 1


def test_absurd_timestamp_is_rejected():
    rx = Receiver(ANNE)
    good = frames_for("temp_chest", [0, 1, 2])
    for b in good:
        rx.feed(b)
    bad = frames_for("temp_chest", [300], t0_ns=10**13)[0]  # 3 h off, and not the next frames
    assert rx.feed(bad) == []
    assert rx.counts()["rejected:absurd timestamp"] == 1


def test_a_clock_step_is_reanchored_on_the_sequence_numbers():
    """The device clock jumps 3 hours at frame 3 (the sequence goes on): frames are placed
    where their numbers say, later ones shifted by the same offset, nothing rejected."""
    rx = Receiver(ANNE)
    for b in frames_for("temp_chest", [0, 1, 2]):
        rx.feed(b)
    jumped = frames_for("temp_chest", list(range(8)), t0_ns=10**13)[3:]
    out = [r for b in jumped for r in rx.feed(b)]
    assert [r.number for r in out] == [3, 4, 5, 6, 7]
    second = 10**9  # temp_chest: one 1-Hz sample a frame; frame 2 was at 2 s
    assert [r.frame.t_device_ns for r in out] == [k * second for k in range(3, 8)]
    counts = rx.counts()
    assert counts["clock_steps"] == 1 and not any(k.startswith("rejected") for k in counts)


@given(st.lists(st.binary(min_size=1, max_size=244), max_size=20), st.data())
def test_bundle_round_trip_and_a_cut_keeps_whole_frames(frames, data):
    packed = bundle(frames)
    assert unbundle(packed) == (frames, None)
    cut = data.draw(st.integers(0, len(packed)))
    got, defect = unbundle(packed[:cut])
    ends = np.cumsum([1 + len(f) for f in frames]).tolist()
    whole = sum(end <= cut for end in ends)
    assert got == frames[:whole]
    assert (defect is None) == (cut in [0, *ends])  # a cut between frames is a shorter bundle


def test_bundle_refuses_frames_it_cannot_carry_and_flags_zero_lengths():
    with pytest.raises(ValueError, match="1..244 bytes"):
        bundle([b"x" * 245])
    assert unbundle(b"\x01a\x00rest") == ([b"a"], "zero frame length at byte 2")


def test_gateway_message_round_trip_and_a_cut_keeps_whole_entries():
    entries = [("dev-0001", [b"ab", b"c"]), ("dev-0002", []), ("é", [b"x" * 244])]
    packed = gateway(entries)
    got, defect = ungateway(packed)
    assert defect is None
    assert [(d, unbundle(b)[0]) for d, b in got] == entries
    got, defect = ungateway(packed[:-1])
    assert [d for d, _ in got] == ["dev-0001", "dev-0002"] and "runs past the end" in defect
    assert ungateway(b"\x00")[1] == "bad device entry at byte 0"
    assert ungateway(b"\x01\xff\x00\x00\x00\x00")[1] == "device id at byte 0 is not UTF-8"
