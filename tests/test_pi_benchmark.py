"""benchmarks/pi.py's parts that need no root nor emulator: the workload it counts, run natively
on tiny inputs (with the marker system calls, harmless on x86: ENOSYS), and its bookkeeping.
The emulated run itself (debootstrap, qemu-aarch64, the plugin) is not part of CI (issue #7)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.commands import run_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pi  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pi") / "inputs.npz"
    pi.write_inputs(path, seconds=80, epochs=3, psg_hours=0.2)
    return path


def test_workload_runs_every_backend_with_markers_and_backends_agree(inputs):
    r = run_json("benchmarks/pi_workload.py", "--frames", str(inputs), "--marks", "--steps", "5",
                 module=False, timeout=300)  # fmt: skip
    assert set(r) == {
        *(f"mamba_step/{b}" for b in ("numpy/fp32", "onnxruntime/fp32", "onnxruntime/int8",
                                      "litert/fp32")),
        *(f"ulw_epoch/{b}/{p}" for b in ("onnxruntime", "litert") for p in ("fp32", "int8")),
        "anne_dsp", "anne_pipeline/onnxruntime", "anne_pipeline/litert", "anne_pipeline/numpy",
    }  # fmt: skip
    marks = [m for w in r.values() for m in w["marks"]]
    assert marks == list(range(1, 2 * len(r) + 1))  # each loop bracketed, labels unique
    assert all(r[k]["units"] == 5 for k in r if k.startswith("mamba_step"))
    assert all(r[k]["units"] == 3 for k in r if k.startswith("ulw_epoch"))
    seconds = float(np.load(inputs)["seconds"])  # whole epochs: 90 s
    assert r["anne_dsp"]["units"] == pytest.approx(0.75 * seconds)  # less a quarter of warm-up
    logits = {k: np.asarray(v["output"]) for k, v in r.items() if k.startswith("ulw_epoch")}
    assert all(v.shape == (3, 5) for v in logits.values())
    fp32 = logits["ulw_epoch/onnxruntime/fp32"]
    assert np.abs(logits["ulw_epoch/litert/fp32"] - fp32).max() < 1e-3
    features = np.asarray(r["anne_dsp"]["output"])
    assert features.shape == (30, 140) and np.isfinite(features).all() and features.std() > 0
    probs = {k: np.asarray(v["output"]) for k, v in r.items() if k.startswith("anne_pipeline")}
    ref = probs["anne_pipeline/numpy"]
    assert ref.shape[0] >= 1 and np.allclose(ref.sum(axis=1), 1, atol=1e-4)
    for p in probs.values():
        assert p.shape == ref.shape and np.abs(p - ref).max() < 1e-3


def test_versions_comparison_and_projection():
    assert pi.upstream_version("1:7.2+dfsg-7+deb12u18+b3") == "7.2+dfsg"
    assert pi.upstream_version("8.2.2+ds-0ubuntu1") == "8.2.2+ds"
    # fp32 within tolerance; int8 judged by the stage of each row, the difference still reported
    assert pi.compare("mamba_step/numpy/fp32", [[1.0, 2.0]], [[1.0, 2.00005]]) == (
        pytest.approx(5e-5), True)  # fmt: skip
    assert not pi.compare("mamba_step/numpy/fp32", [[1.0, 2.0]], [[1.0, 2.01]])[1]
    assert pi.compare("ulw_epoch/onnxruntime/int8", [[5, 1], [0, 3]], [[4.5, 1], [0, 2.9]]) == (
        pytest.approx(0.5), True)  # fmt: skip
    assert not pi.compare("ulw_epoch/onnxruntime/int8", [[5, 1]], [[1, 5]])[1]
    assert not pi.compare("anne_dsp", [[1.0]], [[1.0], [1.0]])[1]  # shapes differ
    native = {"anne_dsp": {"output": [[1.0]], "native_us_per_unit": 1000.0}}
    emulated = {
        b.cpu: {"anne_dsp": {"output": [[1.0]], "instructions_per_unit": 3.0e6}} for b in pi.BOARDS
    }
    rows = {r["board"]: r for r in pi.project(native, emulated)}
    pi4 = rows["Pi 4"]  # 3e6 instructions at 1.5 GHz × IPC 1.0 .. 0.5 = 2 .. 4 ms
    assert pi4["projected_us"] == pytest.approx([2000, 4000])
    assert pi4["core_share_pct"] == pytest.approx([0.2, 0.4])
    assert pi4["x86_scaled_us"] == pytest.approx([2000, 5000]) and pi4["equal"]
    assert rows["Pi 5"]["projected_us"] == pytest.approx([3e6 / 3.84e3, 3e6 / 1.92e3])


def test_unknown_board_is_refused_before_anything_is_built(capsys):
    with pytest.raises(SystemExit) as e:
        pi.main(["--boards", "Pi 9", "--cache", "/nonexistent/never-made"])
    assert e.value.code == 2 and "Pi 9" in capsys.readouterr().err
    assert not Path("/nonexistent/never-made").exists()
