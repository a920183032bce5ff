"""Export → manifest → torch-free runtime: parity, hash verification, clear errors."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from edge.models import ModelIntegrityError, load_epoch_model
from edge.models.manifest import VariantRefused
from export.ulw import export_ulw
from training.models.ulw_sleepnet import ULWSleepNet


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("ulw")
    torch.manual_seed(0)
    model = ULWSleepNet(4)
    model.input_scale.copy_(torch.tensor([1 / 25, 1 / 20, 1 / 40, 1 / 5]))
    for m in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"model": model.state_dict()}, d / "ck.pt")
    rng = np.random.default_rng(0)
    calibration = (rng.standard_normal((32, 4, 3000)) * [[25], [20], [40], [5]]).astype(np.float32)
    manifest = export_ulw(
        d / "ck.pt", d / "out", calibration=calibration, heldout_nights=1, heldout_epochs=40
    )
    return d / "out", model.eval(), manifest


def test_manifest_and_parity(exported):
    out, model, manifest = exported
    assert manifest["params"] == 13_337 and manifest["macs"] == 3_498_352
    assert manifest["parity"]["onnx_fp32_vs_torch_max_abs_logit"] <= 1e-4
    assert manifest["parity"]["native_fp32_vs_torch_max_abs_logit"] <= 1e-4
    assert manifest["files"]["native_int8"]["sha256"]  # the int8 kernel's weights, measured:
    assert 0.0 <= manifest["parity"]["native_int8_agreement_on_calibration"] <= 1.0
    assert json.loads((out / "ulw_sleepnet.json").read_text())["files"]["onnx_fp32"]["sha256"]
    runner = load_epoch_model(out / "ulw_sleepnet.json")
    x = (np.random.default_rng(1).standard_normal((7, 4, 3000)) * 30).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner.predict(x), want, atol=1e-4)
    np.testing.assert_allclose(runner.predict(x[3:4]), want[3:4], atol=1e-4)  # batch == alone
    with pytest.raises(ValueError, match="model input must be"):
        runner.predict(np.zeros((1, 3, 3000)))


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_every_backend_and_precision_runs_from_the_manifest(exported, backend):
    out, model, manifest = exported
    assert {"onnx_fp32", "onnx_int8", "tflite_fp32", "research_onnx_int8_static",
            "research_tflite_int8_static"} <= set(manifest["files"])  # fmt: skip
    assert manifest["parity"]["tflite_fp32_vs_onnx_fp32_max_abs_logit"] <= 1e-4
    x = (np.random.default_rng(2).standard_normal((5, 4, 3000)) * 30).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    fp32 = load_epoch_model(out / "ulw_sleepnet.json", backend, "fp32")
    np.testing.assert_allclose(fp32.predict(x), want, atol=1e-4)  # batch 5: resized
    np.testing.assert_allclose(fp32.predict(x[:1]), want[:1], atol=1e-4)  # back to batch 1
    # whether the int8 file is served depends on its measured agreement (next test); here: runs
    int8 = load_epoch_model(out / "ulw_sleepnet.json", backend, "int8", research=True)
    got = int8.predict(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    # int8 logits track fp32 ones to within a fraction of their spread (argmax agreement on
    # real data is measured by training.evaluate on the trained model)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9
    with pytest.raises(ModelIntegrityError, match="unknown backend"):
        load_epoch_model(out / "ulw_sleepnet.json", "tensorrt")


def test_a_modified_model_is_refused(exported, tmp_path):
    out, _, _ = exported
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    f = copy / "ulw_sleepnet_fp32.onnx"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match the manifest"):
        load_epoch_model(copy / "ulw_sleepnet.json")
    f.unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_epoch_model(copy / "ulw_sleepnet.json")
    with pytest.raises(ModelIntegrityError, match="cannot read"):
        load_epoch_model(tmp_path / "nope.json")


def test_runtime_loads_without_torch(exported):
    out, _, _ = exported
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from edge.models import load_epoch_model
        for backend in ("onnxruntime", "native"):
            m = load_epoch_model({str(out / "ulw_sleepnet.json")!r}, backend)
            print(m.predict(np.zeros((2, 4, 3000), np.float32)).shape)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(2,", "5)", "(2,", "5)"]


def test_int8_qdq_is_static_and_runs(exported, tmp_path):
    """The int8 file is static QDQ (QuantizeLinear/DequantizeLinear pairs, no dynamic ops) and
    runs in onnxruntime. Its accuracy against fp32 is judged on the trained model (issue #5)."""
    import onnx
    import onnxruntime as ort

    from export.quantize import quantize_int8, realistic_calibration

    out, _, _ = exported
    epochs = (np.random.default_rng(2).standard_normal((64, 4, 3000)) * 30).astype(np.float32)
    cal = realistic_calibration(epochs, n=32)
    assert cal.shape == (32, 4, 3000) and np.isfinite(cal).all()
    q = quantize_int8(out / "ulw_sleepnet_fp32.onnx", tmp_path / "int8.onnx", cal)
    ops = {n.op_type for n in onnx.load(q).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops
    y = ort.InferenceSession(str(q)).run(None, {"epochs": epochs[:3]})[0]
    assert y.shape == (3, 5) and np.isfinite(y).all()


def test_export_records_held_out_agreement_and_the_runtime_obeys_it(exported):
    """The export ends with the held-out verification: every variant's agreement with fp32 on a
    test-split night is in the manifest, and the runtime serves exactly the ones at >= 98 %
    that are not research exports."""
    from training.splits import load

    out, _, manifest = exported
    table = manifest["agreement"]
    assert table["nights"] == load("sleep-edf")["nights"]["test"][:1] and table["epochs"] == 40
    rows = table["variants"]
    assert rows["onnxruntime:fp32"]["agreement"] == 1.0
    assert rows["litert:fp32"]["agreement"] == rows["native:fp32"]["agreement"] == 1.0
    assert rows["litert:int8"]["research"] and rows["onnxruntime:int8-static"]["research"]
    for name, row in rows.items():
        backend, precision = name.split(":")
        if precision not in ("fp32", "int8"):
            continue  # research rows have names edge-run cannot ask for
        if row["agreement"] >= table["minimum"] and not row["research"]:
            assert load_epoch_model(out / "ulw_sleepnet.json", backend, precision) is not None
        else:
            with pytest.raises(VariantRefused, match="not offered"):
                load_epoch_model(out / "ulw_sleepnet.json", backend, precision)


def test_onnx_int8_quantises_each_epoch_inside_the_graph(exported):
    """The served ONNX int8 file: integer matmuls on activations quantised per epoch in the
    graph (no fixed activation scale, no QDQ pairs), equal to the numpy int8 reference."""
    import onnx

    from edge.models.ulw_numpy import NumpyEpochModel

    out, _, manifest = exported
    ops = {n.op_type for n in onnx.load(out / "ulw_sleepnet_int8.onnx").graph.node}
    assert {"MatMulInteger", "ReduceMax", "Round"} <= ops
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert manifest["parity"]["onnx_int8_vs_numpy_int8_max_abs_logit"] < 0.05
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 4, 3000)) * [[25], [20], [40], [5]]).astype(np.float32)
    x[3] *= 1e-3  # a quiet epoch: its own scale, not a shared one
    got = load_epoch_model(out / "ulw_sleepnet.json", "onnxruntime", "int8", research=True)
    ref = NumpyEpochModel(np.load(out / "ulw_sleepnet_native_int8.npy"), int8=True)
    np.testing.assert_allclose(got.predict(x), ref.predict(x), atol=0.05)
