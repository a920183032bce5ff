"""The bundled causal Mamba through the torch-free runtime: parity of every backend with torch
over 10,000 carried steps, int8 agreement, many streams in one call, per-stream snapshots, and
the per-second stager (any chunking of the frames gives the same epochs)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.models import ModelIntegrityError
from edge.models.call_costs import CallCosts
from edge.models.step_runner import load_step_model
from edge.models.streams import StreamBank
from edge.ops.epochs import reference_aggregate
from edge.staging import FrameStager
from tests.streaming import cuts, sequence_in_pieces, stepped_state
from training.data.anne import epoch_logits, resynth_walch, stream_columns
from training.evaluate_mamba import load_weights
from training.splits import load as load_split

BUNDLE = Path(__file__).resolve().parents[1] / "edge" / "models" / "mamba_anne"
MANIFEST = BUNDLE / "mamba_anne.json"
STEPS = 10_000


@pytest.fixture(scope="module")
def held_out():
    """The first 10,020 s of a held-out subject's resynthesised night: raw features [T, 140]."""
    subject = load_split("walch")["subjects"]["test"][0]
    return resynth_walch(subject, max_epochs=STEPS // 30 + 1)


@pytest.fixture(scope="module")
def torch_logits(held_out):
    model, stats = load_weights(BUNDLE / "causal_5class.pt")
    with torch.no_grad():
        return model(torch.from_numpy(stats.apply(held_out.x))[None])[0].numpy()


def stepped(model, x):
    conv, h = model.initial_state(1)
    out = np.empty((len(x), len(model.classes)), np.float32)
    for t in range(len(x)):
        out[t : t + 1], conv, h = model.step(x[t : t + 1], conv, h)
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "litert", "native", "numpy"])
def test_backends_equal_torch_over_10000_carried_steps(backend, held_out, torch_logits):
    x = held_out.x[:STEPS]
    assert np.isnan(x).any()  # the first seconds lack a temperature: normalised to 0 as live
    got = stepped(load_step_model(MANIFEST, backend), x)
    np.testing.assert_allclose(got, torch_logits[:STEPS], atol=1e-3, rtol=0)


@pytest.mark.parametrize("backend", ["onnxruntime", "native", "numpy"])
def test_sequence_paths_equal_torch_over_10000_carried_seconds(backend, held_out, torch_logits):
    """What a replay runs: the shipped sequence graph (onnxruntime, 32 s a call), the native
    kernel's carried sequence and the numpy time-parallel sequence, fed 777 seconds at a time
    with the state carried."""
    model = load_step_model(MANIFEST, backend)
    conv, h = model.initial_state(1)
    got = []
    for a in range(0, STEPS, 777):
        y, conv, h = model.sequence(held_out.x[a : min(a + 777, STEPS)], conv, h)
        got.append(y)
    np.testing.assert_allclose(np.concatenate(got), torch_logits[:STEPS], atol=1e-3, rtol=0)


def test_int8_agrees_with_fp32_on_held_out_epochs(held_out):
    fp32 = stepped(load_step_model(MANIFEST, "onnxruntime", "fp32"), held_out.x)
    int8 = stepped(load_step_model(MANIFEST, "onnxruntime", "int8"), held_out.x)
    a, _ = epoch_logits(fp32, held_out.y)
    b, _ = epoch_logits(int8, held_out.y)
    assert len(a) > 300
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98


def test_manifest_states_what_the_runtime_needs():
    m = json.loads(MANIFEST.read_text())
    assert m["kind"] == "step" and m["classes"] == ["W", "N1", "N2", "N3", "REM"]
    assert m["state_floats_per_stream"] == 1140
    assert len(m["normalisation"]["mean"]) == len(m["normalisation"]["std"]) == 140
    assert m["flops"] == 2 * m["linear_macs"] + m["elementwise_flops"]
    assert "Walch" in m["training"]["data"]
    assert set(m["training"]["train_subjects"]).isdisjoint(load_split("walch")["subjects"]["test"])


def test_shipped_tflite_steps_run_whole_inside_xnnpack():
    """One XNNPACK partition: torch's softplus (GREATER/SELECT, which XNNPACK does not run)
    split the graph into four and cost ~2 µs per one-stream step (measured)."""
    from ai_edge_litert.interpreter import Interpreter

    for key in ("tflite_fp32", "tflite_fp32_block"):
        path = BUNDLE / json.loads(MANIFEST.read_text())["files"][key]["path"]
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        ops = [op["op_name"] for op in interpreter._get_ops_details()]
        assert ops.count("DELEGATE") == 1, (key, ops.count("DELEGATE"))
        assert not {"GREATER", "SELECT", "SELECT_V2"} & set(ops), key


def test_a_modified_model_file_is_refused(tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(BUNDLE, copy)
    f = copy / "mamba_anne_fp32.onnx"
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_step_model(copy / "mamba_anne.json", "onnxruntime")


@pytest.mark.parametrize("backend", ["onnxruntime", "native"])
def test_many_streams_in_one_call_join_leave_and_move_by_snapshot(backend, held_out):
    model = load_step_model(MANIFEST, backend)
    rng = np.random.default_rng(0)
    x = held_out.x[:400]
    feats = {s: np.roll(x, 37 * s, axis=0) for s in range(5)}  # five different streams
    alone = {s: stepped(model, f) for s, f in feats.items()}
    # stream 4 joins at t=100; stream 1 leaves at t=150 and rejoins from its snapshot at t=220
    # (its seconds 150..219 are stepped in a second bank, as if moved to another process); each
    # second a random stream skips (a gap: it holds its state and does not step)
    bank, other = StreamBank(model), StreamBank(model)
    pos = dict.fromkeys(feats, 0)
    got = {s: [] for s in feats}
    for s in range(4):
        bank.join(s)
    for t in range(400):
        if t == 100:
            bank.join(4)
        if t == 150:
            other.join(1, bank.leave(1))
        if t == 220:
            bank.join(1, other.leave(1))
        skip = int(rng.integers(0, 5))
        for b in (bank, other):
            due = {s: feats[s][pos[s]] for s in b.streams if s != skip and pos[s] < 400}
            for s, logits in b.step(due).items():
                got[s].append(logits)
                pos[s] += 1
    for s in feats:
        n = len(got[s])
        assert n > 200
        np.testing.assert_allclose(np.stack(got[s]), alone[s][:n], atol=1e-5, rtol=0)


def test_a_run_of_seconds_of_one_stream_equals_its_steps_and_leaves_the_others(held_out):
    model = load_step_model(MANIFEST, "onnxruntime")
    x = held_out.x[:120]
    feats = {s: np.roll(x, 29 * s, axis=0) for s in range(3)}
    alone = {s: stepped(model, f) for s, f in feats.items()}
    bank = StreamBank(model)
    for s in feats:
        bank.join(s)
    first = bank.step({s: feats[s][0] for s in feats})  # all three, one second
    middle = bank.step_sequence(1, feats[1][1:80])  # then stream 1 alone, 79 seconds at once
    rest = [bank.step({s: feats[s][t] for s in (0, 2)}) for t in range(1, 40)]
    np.testing.assert_allclose(np.vstack([first[1], middle]), alone[1][:80], atol=1e-5, rtol=0)
    for s in (0, 2):  # the others' states were left where they were
        got = np.stack([first[s]] + [r[s] for r in rest])
        np.testing.assert_allclose(got, alone[s][:40], atol=1e-5, rtol=0)
    assert bank.stream_steps == 3 + 79 + 2 * 39


@pytest.mark.parametrize("backend", ["numpy", "native"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_sequence_in_any_chunks_equals_its_steps(backend, data, held_out):
    """The numpy backend's ``sequence`` (time-parallel but for the SSM recurrence) and the
    native kernel's (the state carried inside it), used when a replay queues many seconds, in
    random chunks, state carried: the logits and the final state of one step a second, to float
    rounding (1e-5)."""
    model = load_step_model(MANIFEST, backend)
    x = held_out.x[2000:2600]  # ten minutes mid-night
    got, conv, h = sequence_in_pieces(model, x, data.draw(cuts(len(x))))
    np.testing.assert_allclose(got, stepped(model, x), atol=1e-5, rtol=0)
    c2, h2 = stepped_state(model, x)
    np.testing.assert_allclose(h, h2, atol=1e-5, rtol=0)
    np.testing.assert_allclose(conv, c2, atol=1e-5, rtol=0)


def test_native_steps_many_streams_as_each_alone_and_checks_shapes(held_out):
    """The native kernel steps each row with its own state: B = 300 streams in one call equal
    each stream stepped alone (the pre-MLP's BLAS products may round differently by B: 1e-6),
    and the inputs are left as they were."""
    model = load_step_model(MANIFEST, "native")
    rng = np.random.default_rng(1)
    x = held_out.x[rng.integers(0, STEPS, 300)]
    conv, h = model.initial_state(300)
    for _ in range(3):  # non-zero states
        _, conv, h = model.step(x[rng.permutation(300)], conv, h)
    before = conv.copy(), h.copy()
    logits, conv2, h2 = model.step(x, conv, h)
    np.testing.assert_array_equal(conv, before[0])
    np.testing.assert_array_equal(h, before[1])
    for i in (0, 1, 150, 299):
        one = model.step(x[i : i + 1], conv[i : i + 1], h[i : i + 1])
        for a, b in zip(one, (logits, conv2, h2), strict=True):
            np.testing.assert_allclose(a[0], b[i], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="states"):
        model.step(x[:2], conv[:3], h[:3])
    with pytest.raises(ValueError, match="state"):
        model.model.step(x[:2], conv[:2, :2], h[:2])


def test_native_refuses_a_model_of_other_shape():
    """The kernel's shapes are fixed (d_model 10, 3 layers, ...): another model is one clear
    error at load, not wrong logits."""
    from edge.models.mamba_numpy import NumpyMamba
    from edge.models.native_step import NativeStepModel
    from training.models.mamba import MambaStager

    other = MambaStager(d_model=12).eval()
    reference = NumpyMamba({k: v.numpy() for k, v in other.state_dict().items()})
    with pytest.raises(ModelIntegrityError, match=r"built for .*\(3, 10, 20, 16, 4, 1\)"):
        NativeStepModel(reference)


STAGING = ("ecg", "ppg", "acc")


def _stager():
    model = load_step_model(MANIFEST, "onnxruntime")
    return FrameStager(model, {k: v.tolist() for k, v in stream_columns().items()}, STAGING)


gaps = st.lists(
    st.tuples(
        st.sampled_from(["temp_chest", "temp_finger", "ecg", "ppg", "acc"]),
        st.integers(0, 299),
        st.integers(1, 150),
        st.booleans(),
    ),
    max_size=4,
)


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(1, 299), max_size=6), gaps=gaps)
def test_any_chunking_of_frames_gives_the_same_epochs(cuts, gaps, held_out_frames):
    """Frames pushed in random chunks (with gaps in random streams, some in only one of a
    stream's features) give the epochs of one push, and those are the batch reference: a
    second is stepped when ECG, PPG or ACC is valid, every invalid stream entering as missing
    as a whole; mean logits per 30-s epoch, unscored when more than a quarter of its seconds
    had none of the three."""
    frames = held_out_frames.copy()
    cols = stream_columns()
    for stream, a, n, whole_stream in gaps:
        frames[cols[stream] if whole_stream else cols[stream][:1], a : a + n] = np.nan
    whole = _stager()
    want = whole.stage(frames) + whole.flush()
    pieces = _stager()
    got = []
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), frames.shape[1]], strict=True):
        got += pieces.stage(frames[:, a:b])
    got += pieces.flush()
    assert [r.to_json() for r in got] == [r.to_json() for r in want]
    # batch reference: hide each stream where any of its features is missing, step the
    # seconds where a staging stream is left, NaN logits elsewhere, aggregate
    model = load_step_model(MANIFEST, "onnxruntime")
    valid = {s: ~np.isnan(frames[c]).any(axis=0) for s, c in cols.items()}
    hidden = frames.copy()
    for s, c in cols.items():
        hidden[np.ix_(c, np.flatnonzero(~valid[s]))] = np.nan
    ok = np.any([valid[s] for s in STAGING], axis=0)
    logits = np.full((frames.shape[1], 5), np.nan, np.float32)
    logits[ok] = stepped(model, hidden[:, ok].T)
    mean, stage = reference_aggregate(logits, 30, 0, min_valid=0.75)
    assert [r.stage for r in want] == stage.tolist()
    for k, (r, m) in enumerate(zip(want, mean, strict=True)):
        used = {s for s in cols if valid[s][30 * k : 30 * k + 30].any()}
        if r.stage >= 0:
            p = np.exp(m - m.max()) / np.exp(m - m.max()).sum()
            np.testing.assert_allclose(list(r.probabilities.values()), p, atol=2e-5)
            assert set(r.groups) == used
        else:
            assert r.reason.startswith("missing data: no ecg or ppg or acc in")


@pytest.fixture(scope="module")
def held_out_frames(held_out):
    return held_out.x[:300].T.astype(np.float64)  # (140, 300): ten epochs


def test_stager_snapshot_restores_mid_epoch(held_out_frames):
    a = _stager()
    first = a.stage(held_out_frames[:, :145])
    snap = {k: np.copy(v) for k, v in a.snapshot().items()}
    rest_a = a.stage(held_out_frames[:, 145:]) + a.flush()
    b = _stager()
    b.restore(snap)
    rest_b = b.stage(held_out_frames[:, 145:]) + b.flush()
    assert len(first) == 4 and [r.to_json() for r in rest_a] == [r.to_json() for r in rest_b]


@pytest.mark.parametrize(
    "costs",
    [
        CallCosts(100.0, 5.0, (600.0, 600.0)),  # sequences cheap: long queues go alone
        CallCosts(10.0, 1.0, (1e6, 1e6)),  # sequences dear: every queue shares steps
    ],
)
def test_queued_seconds_give_the_same_logits_whichever_way_they_are_stepped(held_out, costs):
    """``StreamBank.step_queues`` splits queues of different lengths between sequence calls
    and shared steps as the call costs say; each stream's logits equal stepping it alone."""
    model = load_step_model(MANIFEST, "onnxruntime")
    lengths = {0: 40, 1: 3, 2: 0, 3: 17, 4: 1}
    feats = {s: np.roll(held_out.x, 53 * s, axis=0)[:m] for s, m in lengths.items()}
    bank = StreamBank(model)
    bank.costs = costs
    for s in feats:
        bank.join(s)
    got = bank.step_queues(feats)
    assert sorted(got) == [s for s, m in lengths.items() if m]
    for s, logits in got.items():
        np.testing.assert_allclose(logits, stepped(model, feats[s]), atol=1e-5, rtol=0)
    assert bank.stream_steps == sum(lengths.values())


def test_plan_sends_long_queues_to_sequences_and_short_ones_to_shared_steps():
    costs = CallCosts(step_us=130.0, per_stream_us=8.0, sequence_us=(680.0, 680.0))
    assert costs.plan([30]) == 1  # one call instead of 30
    assert costs.plan([3]) == 0  # three steps beat one sequence call
    assert costs.plan([40, 30, 2, 1]) == 2  # the two long ones alone, the short ones together
    assert costs.plan([4] * 50) == 0  # 4 shared calls carry all 50 streams
    assert costs.sequence(33) == 680.0 + 680.0  # a second chunk of 32
    numpy_like = CallCosts(260.0, 13.0, (260.0, 32 * 200.0))  # cost grows with the seconds
    assert numpy_like.sequence(1) == 260.0 and numpy_like.sequence(32) == 6400.0
