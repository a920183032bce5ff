"""The bundled ULW-SleepNet: manifest, hashes, parity of every shipped file with its weights."""

import json

import numpy as np
import pytest
import torch

from edge.cli import MODELS_DIR
from edge.models import load_epoch_model
from edge.models.manifest import Manifest
from training.data.psg import resynth_sleep_edf
from training.models.ulw_sleepnet import ULWSleepNet
from training.splits import load

MANIFEST = MODELS_DIR / "ulw_sleepnet" / "ulw_sleepnet.json"


@pytest.fixture(scope="module")
def held_out():
    """The first 200 epochs of a test-split night (a subject never trained on)."""
    night = load("sleep-edf")["nights"]["test"][0]
    return resynth_sleep_edf(night, 0, max_epochs=200).x


@pytest.fixture(scope="module")
def torch_logits(held_out):
    model = ULWSleepNet.from_checkpoint(Manifest.load(MANIFEST).file("torch_checkpoint"))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(held_out)).numpy()


def test_manifest_says_what_the_model_is():
    m = json.loads(MANIFEST.read_text())
    assert m["params"] == 13_337 and m["macs"] == 3_498_352
    assert m["classes"] == ["W", "N1", "N2", "N3", "REM"]
    assert m["inputs"][0]["shape"] == ["batch", 4, 3000]
    assert set(m["files"]) == {"onnx_fp32", "onnx_int8", "tflite_fp32", "native_fp32",
                               "native_int8", "torch_checkpoint", "research_onnx_int8_static",
                               "research_tflite_int8_static"}  # fmt: skip
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    assert m["training"]["train_nights"]  # provenance: which nights trained it
    test_nights = set(load("sleep-edf")["nights"]["test"])
    assert not test_nights & set(m["training"]["train_nights"])
    assert (MANIFEST.parent / "MODEL_CARD.md").exists()


@pytest.mark.parametrize("backend", ["onnxruntime", "litert", "native", "numpy"])
def test_fp32_files_equal_the_weights(backend, held_out, torch_logits):
    got = load_epoch_model(MANIFEST, backend, "fp32").predict(held_out)
    np.testing.assert_allclose(got, torch_logits, atol=1e-4)


@pytest.mark.parametrize(("backend", "precision"), [("onnxruntime", "int8-static"),
                                                    ("litert", "int8")])  # fmt: skip
def test_research_static_int8_files_track_fp32(backend, precision, held_out, torch_logits):
    int8 = load_epoch_model(MANIFEST, backend, precision, research=True)
    got = int8.predict(held_out)
    assert got.dtype == np.float32 and got.shape == torch_logits.shape
    # static int8 misses the int8 goal (>= 98 % argmax agreement; 68-78 % over the held-out
    # split, model card), so edge-run never serves it: here its logits still follow fp32's
    # (r 0.73-0.82 on these epochs), which they do not without the runtime's per-channel
    # input scaling (r 0.21-0.58)
    r = np.corrcoef(got.ravel(), torch_logits.ravel())[0, 1]
    unscaled = int8.model.predict(held_out)
    r_unscaled = np.corrcoef(unscaled.ravel(), torch_logits.ravel())[0, 1]
    assert r >= 0.65 and r > r_unscaled + 0.1, (r, r_unscaled)


def test_onnx_int8_stages_as_fp32_and_as_its_numpy_reference(held_out, torch_logits):
    """The served onnxruntime int8 (per-epoch activation scales inside the graph) computes what
    the numpy int8 reference computes, and stages >= 98 % of held-out epochs as fp32."""
    got = load_epoch_model(MANIFEST, "onnxruntime", "int8").predict(held_out)
    reference = load_epoch_model(MANIFEST, "numpy", "int8").predict(held_out)
    assert np.mean(got.argmax(1) == torch_logits.argmax(1)) >= 0.98
    assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.99
    assert np.abs(got - reference).max() < 0.05  # rounding ties and summation order only
    assert not np.allclose(got, torch_logits, atol=1e-3)  # it is quantised, not fp32 renamed


def test_native_int8_stages_as_fp32(held_out, torch_logits):
    """The int8 kernel (per-epoch activation scales) meets the int8 goal on held-out epochs:
    >= 98 % the same stage as fp32 (99.3 % over the whole held-out split, model card); its
    numpy reference stages the same."""
    int8 = load_epoch_model(MANIFEST, "native", "int8").predict(held_out)
    reference = load_epoch_model(MANIFEST, "numpy", "int8").predict(held_out)
    assert np.mean(int8.argmax(1) == torch_logits.argmax(1)) >= 0.98
    np.testing.assert_array_equal(int8.argmax(1), reference.argmax(1))
    assert not np.allclose(int8, torch_logits, atol=1e-3)  # it is quantised, not fp32 renamed
