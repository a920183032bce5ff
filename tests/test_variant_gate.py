"""No option that silently loses accuracy: the runtime serves a backend × precision only when the
manifest records that it stages at least 98 % of held-out epochs as fp32; a refusal is one line
naming the alternative; research exports load only when asked for by name."""

import json
import shutil

import numpy as np
import pytest

from edge.cli import MODELS_DIR
from edge.models import load_epoch_model
from edge.models.manifest import Manifest, VariantRefused
from tests.commands import run
from training.splits import load as load_split

BUNDLED = MODELS_DIR / "ulw_sleepnet"


def _copy(tmp_path, edit) -> object:
    """The bundled model folder with its manifest edited by ``edit(manifest)``."""
    d = tmp_path / "m"
    shutil.copytree(BUNDLED, d)
    path = d / "ulw_sleepnet.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    return path


def test_bundled_manifest_records_every_variant_measured_on_held_out_nights():
    m = json.loads((BUNDLED / "ulw_sleepnet.json").read_text())
    table = m["agreement"]
    assert table["reference"] == "onnxruntime:fp32" and table["minimum"] == 0.98
    assert table["epochs"] >= 1000 and table["nights"]
    test_nights = set(load_split("sleep-edf")["nights"]["test"])
    assert set(table["nights"]) <= test_nights  # held-out subjects only
    rows = table["variants"]
    assert set(rows) >= {"onnxruntime:fp32", "onnxruntime:int8", "litert:fp32", "litert:int8",
                         "native:fp32", "native:int8", "onnxruntime:int8-static"}  # fmt: skip
    for name, row in rows.items():
        assert row["file"] in m["files"], name
        assert row["research"] == row["file"].startswith("research_")
    served = [n for n, r in rows.items() if not r["research"]]
    assert all(rows[n]["agreement"] >= 0.98 for n in served)  # what edge-run may serve
    assert rows["onnxruntime:int8"]["file"] == "onnx_int8"  # per-epoch scales, not static


@pytest.mark.parametrize("backend", ["onnxruntime", "native", "numpy"])
def test_int8_variants_that_meet_the_bar_are_served(backend):
    model = load_epoch_model(BUNDLED / "ulw_sleepnet.json", backend, "int8")
    assert model.classes == ["W", "N1", "N2", "N3", "REM"]


def test_the_static_litert_int8_is_refused_naming_the_alternative():
    with pytest.raises(VariantRefused) as e:
        load_epoch_model(BUNDLED / "ulw_sleepnet.json", "litert", "int8")
    msg = str(e.value)
    assert "\n" not in msg and "research export" in msg and "% of held-out epochs" in msg
    assert "use --backend " in msg and "--precision int8" in msg
    # asked for by name, for evaluation: it loads
    research = load_epoch_model(BUNDLED / "ulw_sleepnet.json", "litert", "int8", research=True)
    logits = research.predict(np.zeros((2, 4, 3000), np.float32))
    assert logits.shape == (2, 5) and logits.dtype == np.float32


def test_edge_run_refuses_it_in_one_line(tmp_path):
    r = run("edge.cli", "--source", "sim", "--duration", "60", "--out", str(tmp_path / "o"),
            "--plain", "--backend", "litert", "--precision", "int8")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "not offered" in ln]
    assert len(lines) == 1 and "--backend native --precision int8" in lines[0], r.stderr
    assert not (tmp_path / "o" / "epochs.jsonl").exists()


def test_a_figure_below_the_minimum_is_refused(tmp_path):
    def lower(m):
        m["agreement"]["variants"]["native:int8"]["agreement"] = 0.97

    path = _copy(tmp_path, lower)
    with pytest.raises(VariantRefused, match=r"only 97\.0% of held-out epochs .* 98% required"):
        load_epoch_model(path, "native", "int8")
    assert load_epoch_model(path, "onnxruntime", "int8") is not None  # the others still are


def test_a_manifest_without_figures_serves_fp32_only(tmp_path):
    path = _copy(tmp_path, lambda m: m.pop("agreement"))
    assert load_epoch_model(path, "native", "fp32") is not None
    with pytest.raises(VariantRefused, match="never measured.*use --precision fp32"):
        load_epoch_model(path, "native", "int8")


def test_an_unmeasured_variant_is_refused(tmp_path):
    path = _copy(tmp_path, lambda m: m["agreement"]["variants"].pop("litert:fp32"))
    with pytest.raises(VariantRefused, match="never measured"):
        load_epoch_model(path, "litert", "fp32")
    assert Manifest.load(path).variant_file("litert", "fp32", "tflite", research=True)
