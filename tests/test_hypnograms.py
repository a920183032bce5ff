"""Hypnograms beside recordings: EDF+ annotations, CSV/TSV, NSRR XML, DREAMS text."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.hypnograms import HypnogramError, read_stages
from firmware_sim.recordings import find_hypnogram

DREAMS = Path(__file__).parents[2] / "shared/data/dreams_spindles"


@pytest.mark.skipif(not (DREAMS / "excerpt3.npz").exists(), reason="DREAMS data not here")
def test_dreams_text_matches_the_shared_30s_labels():
    for n in (1, 3, 6):
        got = read_stages(DREAMS / "original" / f"Hypnogram_excerpt{n}.txt")
        with np.load(DREAMS / f"excerpt{n}.npz") as z:
            np.testing.assert_array_equal(got, z["stage_30s"])
    assert find_hypnogram(DREAMS / "original/excerpt3.edf").name == "Hypnogram_excerpt3.txt"


def test_csv_tsv_and_our_own_output(tmp_path):
    (tmp_path / "a.csv").write_text("epoch,stage\n0,W\n1,N1\n2,S2\n3,N3\n4,REM\n5,?\n")
    np.testing.assert_array_equal(read_stages(tmp_path / "a.csv"), [0, 1, 2, 3, 4, -1])
    (tmp_path / "b.tsv").write_text("onset\tduration\tstage\n0\t60\tWake\n60\t30\tR\n")
    np.testing.assert_array_equal(read_stages(tmp_path / "b.tsv"), [0, 0, 4])
    (tmp_path / "c.csv").write_text("start_s,stage_name\n0,N2\n30,unscored\n")
    np.testing.assert_array_equal(read_stages(tmp_path / "c.csv"), [2, -1])
    (tmp_path / "d.csv").write_text("stage\nN2\nbanana\n")
    with pytest.raises(HypnogramError, match="unknown stage label 'banana'"):
        read_stages(tmp_path / "d.csv")


def test_nsrr_xml(tmp_path):
    ev = "<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>{}</EventConcept>"
    ev += "<Start>{}</Start><Duration>{}</Duration></ScoredEvent>"
    spans = [("Wake|0", 0, 60), ("Stage 2 sleep|2", 60, 30), ("Stage 4 sleep|4", 90, 30)]
    spans += [("REM sleep|5", 120, 30)]
    body = "".join(ev.format(c, s, d) for c, s, d in spans)
    doc = f"<PSGAnnotation><ScoredEvents>{body}</ScoredEvents></PSGAnnotation>"
    (tmp_path / "n.xml").write_text(doc)
    (tmp_path / "n.xml").write_text(
        f"<PSGAnnotation><ScoredEvents>{body}</ScoredEvents></PSGAnnotation>"
    )
    np.testing.assert_array_equal(read_stages(tmp_path / "n.xml"), [0, 0, 2, 3, 4])
    (tmp_path / "e.xml").write_text('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    with pytest.raises(HypnogramError, match="DOCTYPE"):
        read_stages(tmp_path / "e.xml")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=300))
def test_any_text_is_stages_or_one_line(tmp_path, text):
    p = tmp_path / "h.csv"
    p.write_text(text, encoding="utf-8", errors="replace")
    try:
        got = read_stages(p)
    except HypnogramError as exc:
        assert "\n" not in str(exc)
        return
    assert set(np.unique(got)) <= {-1, 0, 1, 2, 3, 4}


def test_edf_plus_scoring_inside_the_recording(tmp_path):
    import edfio

    from firmware_sim.recordings import open_recording

    x = np.zeros(100 * 120)
    edf = edfio.Edf([edfio.EdfSignal(x, 100, label="EEG Fpz-Cz", physical_range=(-1.0, 1.0))])
    edf.set_annotations([edfio.EdfAnnotation(0, 60, "Sleep stage W"),
                         edfio.EdfAnnotation(60, 30, "Sleep stage 2"),
                         edfio.EdfAnnotation(70, None, "Arousal"),
                         edfio.EdfAnnotation(90, 30, "Sleep stage R")])  # fmt: skip
    edf.write(tmp_path / "n.edf")
    rec = open_recording(tmp_path / "n.edf", "psg")
    np.testing.assert_array_equal(rec.stages, [0, 0, 2, 4])
    assert rec.hypnogram == tmp_path / "n.edf"
