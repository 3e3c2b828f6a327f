"""The evaluation package on the shipped samples (small and fast) and on hand-made cases.

The full evaluations (docs/EVALUATION.md) are commands, not tests; here: the same code paths on samples/ludb and
samples/ptbxl, the metric arithmetic on cases worked out by hand, the report parser on real PTB-XL report strings in
English and German, and the held-out guards.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # until pyproject's package list names evaluation*, import it from the checkout
    sys.path.insert(0, str(ROOT))

from evaluation import ludb, ptbxl_labels  # noqa: E402
from evaluation.delineation import score_lead  # noqa: E402
from evaluation.methods import LeadMarks  # noqa: E402
from evaluation.metrics import Bootstrap, binary_counts, binary_metrics, error_summary  # noqa: E402
from evaluation.neurokit_baseline import _per_beat  # noqa: E402

pytest.importorskip("neurokit2")

SAMPLES = ROOT / "samples"


# --- end to end on the samples -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def delineation(tmp_path_factory):
    from evaluation.delineation import run_delineation

    out = tmp_path_factory.mktemp("delineation")
    report = run_delineation(SAMPLES / "ludb", out / "d.json", plots_dir=out / "plots", progress=False,
                             methods=("dwt", "peak"), workers=2, n_boot=400)
    return report, out


def test_delineation_writes_json_and_pngs(delineation):
    report, out = delineation
    on_disk = json.loads((out / "d.json").read_text())
    assert on_disk["splits"]["all"]["records"] == report["splits"]["all"]["records"] == 13
    assert set(report["splits"]) == {"tune", "rest", "all"}
    assert report["splits"]["tune"]["records"] + report["splits"]["rest"]["records"] == 13
    assert all(i % 4 == 1 for i in report["splits"]["tune"]["ids"])
    for png in report["plots"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from evaluation.markdown import delineation_tables

    md = delineation_tables(on_disk)
    assert "| rest (" in md and "| ours |" in md.replace("| tune | ours |", "| ours |")
    pk = on_disk["splits"]["all"]["methods"]["ours"]["t_peak_error_ms"]
    assert pk["mean_abs"]["ci"][0] <= pk["mean_abs"]["value"] <= pk["mean_abs"]["ci"][1]
    assert f"| all | ours | {pk['mean_abs']['value']:.1f} (" in md  # the spread table


def test_our_t_polarity_at_least_neurokit_on_samples(delineation):
    report, _ = delineation
    m = report["splits"]["all"]["methods"]
    ours = m["ours"]["t_polarity"]["accuracy"]["value"]
    for nk in ("nk-dwt", "nk-peak"):
        assert ours >= m[nk]["t_polarity"]["accuracy"]["value"], nk
        assert m["ours"]["t_polarity"]["on_inverted"]["value"] >= m[nk]["t_polarity"]["on_inverted"]["value"], nk
    assert ours >= 0.9
    # and the engine still finds the annotated beats
    assert m["ours"]["qrs"]["sensitivity"]["value"] >= 0.99
    assert m["ours"]["t_wave"]["sensitivity"]["value"] >= 0.97


def test_bootstrap_intervals_contain_point_estimates(delineation):
    report, _ = delineation
    checked = 0
    for s in report["splits"].values():
        for m in s["methods"].values():
            for metric in (m["qrs"]["sensitivity"], m["t_wave"]["ppv"], m["t_polarity"]["accuracy"],
                           m["t_offset_error_ms"]["median"], m["t_peak_error_ms"]["mean"]):
                if metric["value"] is None or metric["ci"][0] is None:
                    continue
                assert metric["ci"][0] - 1e-9 <= metric["value"] <= metric["ci"][1] + 1e-9
                checked += 1
    assert checked >= 20


def test_ludb_copy_is_scaled_to_one_mv_peak_to_peak(delineation):
    report, _ = delineation
    assert report["scaling"]["all_exactly_1mV_pp"] and report["scaling"]["leads"] == 13 * 12


def test_twi_on_samples(tmp_path):
    from evaluation.twi import run_twi

    report = run_twi(SAMPLES, tmp_path / "t.json", limit=4, progress=False, methods=("dwt",), workers=2, n_boot=200,
                     plots_dir=tmp_path)
    assert json.loads((tmp_path / "t.json").read_text())["ptbxl"]["rates"]["100"]["records"] == 4
    p100 = report["ptbxl"]["rates"]["100"]
    for key in ("twi_record_vs_invt", "twi_record_vs_report_text", "twi_lead_vs_report_text"):
        assert set(p100[key]) == {"ours", "nk-dwt"}
    assert set(p100["secondary_vs_scp"]) == {"lbbb", "rbbb", "lvh", "pacing", "wpw"}
    assert "500" in report["ptbxl"]["rates"]
    lud = report["ludb"]["splits"]["all"]
    assert lud["records"] == 4 and set(lud["secondary_vs_ludb_labels"]) == {"lbbb", "rbbb", "lvh", "pacing"}
    assert Path(report["plots"]["twi_record_level"]).exists()
    st = report["ptbxl"]["rates"]["100"]["st_depression"]
    assert {"record_vs_std_code", "record_vs_report_text", "lead_vs_report_text"} <= set(st)
    from evaluation.markdown import twi_tables

    assert "INVT code" in twi_tables(report)


def test_bench_engine_runs_on_a_sample(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--records", str(SAMPLES / "ludb"), "--limit", "1", "--repeat", "1", "--nk-repeat", "1",
                      "--no-pin", "--json", str(tmp_path / "b.json")])
    assert out["records"] == 1 and out["ours_cpu_ms"]["median"] > 0 and out["ratio_nk_over_ours_median"] > 1
    assert json.loads((tmp_path / "b.json").read_text())["goal_ms"] == 20.0


# --- metric arithmetic --------------------------------------------------------------------------------------------

def test_match_is_one_to_one_nearest_first():
    assert sorted(ludb.match(np.array([100, 104]), np.array([103]), 10)) == [(1, 0)]
    assert ludb.match(np.array([100]), np.array([200]), 50) == []
    # interval form: 0 inside [on, off]
    assert ludb.match(np.array([100]), np.array([130]), 5, on=np.array([90]), off=np.array([135])) == [(0, 0)]


def test_score_lead_hand_made():
    fs = 500.0
    waves = [ludb.Wave("N", 100, 110, 140), ludb.Wave("t", 200, 250, 300),
             ludb.Wave("N", 600, 610, 640), ludb.Wave("t", 700, 750, 800)]
    span = ludb.lead_span(waves, 1000, fs)
    marks = LeadMarks(r=np.array([112, 611, 950]), qrs_on=np.array([98, 598, 940]), qrs_off=np.array([142, 642, 960]),
                      t_peak=np.array([255, 580, -1]), t_off=np.array([310, 620, -1]), t_amp=0.2)
    s = score_lead(marks, waves, span, fs)
    # R at 950 lies after the lead's last annotation (800): outside the annotated span, not scored
    assert (s["qtp"], s["qfp"], s["qfn"]) == (2, 0, 0)
    # T at 580 is 170 samples = 340 ms from the annotated 750 (> 150 ms): a false positive and a miss
    assert (s["ttp"], s["tfp"], s["tfn"]) == (1, 1, 1)
    assert s["pk_err"] == [10.0] and s["off_err"] == [20.0]  # 5 and 10 samples at 500 Hz
    assert s["ba"] == [[400.0, 420.0]]  # T offset from the annotated QRS onset: 200 vs 210 samples


def test_binary_metrics_and_ratio_by_hand():
    boot = Bootstrap(6, n_boot=500)
    m = binary_metrics(boot, binary_counts([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1]))
    assert m["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert m["specificity"]["value"] == pytest.approx(2 / 3)
    assert m["ppv"]["value"] == pytest.approx(2 / 3)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    r = boot.ratio([1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1])
    assert r["value"] == 1.0 and r["ci"] == [1.0, 1.0]  # no variation, no width
    r = boot.ratio([0, 0, 0], [0, 0, 0])
    assert r["value"] is None
    d = boot.ratio_diff([1] * 6, [1] * 6, [0, 1, 0, 1, 0, 1], [1] * 6)
    assert d["value"] == pytest.approx(0.5) and d["ci"][0] <= 0.5 <= d["ci"][1]


def test_error_summary_by_hand():
    boot = Bootstrap(3, n_boot=300)
    e = error_summary(boot, [[-10.0, 10.0], [20.0], [0.0, 0.0]])
    assert e["median"]["value"] == 0.0
    assert e["mean"]["value"] == pytest.approx(4.0)
    assert e["sd"]["value"] == pytest.approx(float(np.std([-10, 10, 20, 0, 0], ddof=1)))
    assert e["median_abs"]["value"] == 10.0
    assert e["mean_abs"]["value"] == pytest.approx(8.0)
    assert e["p90_abs"]["value"] == pytest.approx(float(np.percentile([10, 10, 20, 0, 0], 90)))
    for k in ("median", "mean", "median_abs", "mean_abs", "p90_abs"):
        assert e[k]["ci"][0] <= e[k]["value"] <= e[k]["ci"][1]


def test_bootstrap_ci_contains_point_estimate_random():
    rng = np.random.default_rng(3)
    num = rng.integers(0, 10, 40)
    den = num + rng.integers(0, 5, 40)
    r = Bootstrap(40, n_boot=1000).ratio(num, den)
    assert r["ci"][0] < r["value"] < r["ci"][1]


def test_neurokit_landmarks_assigned_to_their_beat():
    rp = np.array([100, 600, 1100])
    # a P onset list missing its first entry: must land on beats 2 and 3, not 1 and 2
    assert _per_beat([560.0, 1060.0], rp, before=True, n=1500).tolist() == [-1, 560, 1060]
    assert _per_beat([np.nan, 850.0, 1350.0], rp, before=False, n=1500).tolist() == [-1, 850, 1350]


def test_lead_reference_on_a_synthetic_lead():
    fs = 500.0
    x = np.zeros(1000)
    x[300:310] = 1.0  # R
    x[420:480] = -0.3  # inverted T, peak at 450
    waves = [ludb.Wave("p", 200, 230, 260), ludb.Wave("N", 290, 305, 320), ludb.Wave("t", 400, 450, 500)]
    ref = ludb.lead_reference(x, waves, fs)
    assert ref.t_amp == pytest.approx(-0.3) and ref.polarity == "inverted"
    assert ref.r_amp == pytest.approx(1.0) and ref.s_amp == pytest.approx(0.0)


# --- PTB-XL report text (real report strings from PTB-XL folds 1-9) -------------------------------------------------

@pytest.mark.parametrize("report, leads, lang", [
    ("sinus rhythm. left axis deviation. left anterior fascicular block. q waves in v2-5. st segments are elevated in "
     "v3,4,5. t waves are inverted in avl, v2-6 and flat in i. consistent with anterior myocardial infarction, "
     "probably old.",
     {"aVL", "V2", "V3", "V4", "V5", "V6"}, "en"),
    ("sinus rhythm. t waves are inverted in v2,3, low in i and inverted in    avl. findings are of uncertain "
     "significance in a patient of this age.", {"V2", "V3", "aVL"}, "en"),
    ("atrial fibrillation. left axis deviation. low limb lead voltage. t waves are inverted in lateral leads. findings "
     "are likely to be due to ischaemic heart    disease.", {"I", "aVL", "V5", "V6"}, "en"),
    ("sinus rhythm. q waves in ii, iii, avf. st segments are elevated in ii, iii, avf, v5,6. t waves are inverted in "
     "these leads. consistent with inferolateral myocardial infarction which appears recent.",
     {"II", "III", "aVF", "V5", "V6"}, "en"),
    ("sinus rhythm. st segments are depressed in i, avl, v5,6. t waves are low or flat in i, v5,6 and inverted in avl.",
     {"aVL"}, "en"),
    ("sinusbradykardie mlt st-senkung neg. t-veraenderungen in i,avl,v4-6 pathologisches ekg",
     {"I", "aVL", "V4", "V5", "V6"}, "de"),
    ("sinusbradykardie linkstyp t negativ in iii,v1 t abgeflacht in avf 2-zipfliges p 0,12 sec negatives p in iii,avf",
     {"III", "V1"}, "de"),
    ("sinusrhythmus linkstyp st-hebung in v2 biphasisches t in iii, neg in v1 normales ekg", {"V1"}, "de"),
    ("sinusrhythmus linkstyp periphere niederspannung qrs(t) abnormal    anteroseptaler infarkt     alter unbest. "
     "t biphasisch in v2-5, neg in i,avl", {"I", "aVL"}, "de"),
    ("tachykardes vorhofflimmern lagetyp normal st-senkung deszendierend in v5-6 t neg in v5-6 und lateral "
     "kammerhypertrophie lvh schlechte r-progression v1-4", {"V5", "V6"}, "de"),
])
def test_report_leads_named_inverted(report, leads, lang):
    p = ptbxl_labels.parse_report(report)
    assert p.says_inverted and set(p.leads) == leads and p.language == lang


@pytest.mark.parametrize("report", [
    "sinusrhythmus normales ekg ergo:  225 watt  ob  insbes. kein neg  t Über der brustwand.",  # negated
    "sinusbradykardie sonst normales ekg",
    "sinus rhythm. incomplete right bundle branch block. q waves in ii, iii, avf and in v3-6 consistent with  old "
    "anterolateral and inferior myocardial infarction.",
    "sinusrytm vÄnster kammarhypertrofi",
])
def test_report_without_t_inversion(report):
    assert not ptbxl_labels.parse_report(report).says_inverted


def test_report_inverted_without_named_leads_is_record_level_only():
    p = ptbxl_labels.parse_report("sinus rhythm. left ventricular hypertrophy. widespread st segment depression and t "
                                  "wave inversion. this may be due to lv strain or ischaemia.")
    assert p.says_inverted and p.leads_unknown and not p.leads_named


def test_report_slight_and_group_throughout():
    p = ptbxl_labels.parse_report("sinus rhythm. compared with tracing of 9:4:92, t waves are now  inverted throughout "
                                  "chest leads and flat in limb leads. the significance is uncertain.")
    assert set(p.leads) == {"V1", "V2", "V3", "V4", "V5", "V6"}
    p = ptbxl_labels.parse_report("premature atrial contraction(s). sinus rhythm. low limb lead voltage. t waves are "
                                  "slightly inverted in ii, iii, avf. non-specific but consistent with myocardial "
                                  "ischaemia.")
    assert set(p.leads) == set(p.slight_leads) == {"II", "III", "aVF"}


def test_sample_reports_parse_consistently_with_invt():
    rows = ptbxl_labels.load_rows(SAMPLES / "ptbxl")
    invt = [r for r in rows if r.invt]
    assert invt and all(ptbxl_labels.parse_report(r.report).says_inverted for r in invt)
    langs = {ptbxl_labels.parse_report(r.report).language for r in rows}
    assert {"en", "de"} <= langs


# --- held-out data is never read ------------------------------------------------------------------------------------

def test_ludb_labels_complete_bundle_branch_blocks_only(tmp_path):
    lab = ludb.diagnoses(SAMPLES / "ludb")
    assert [i for i, v in lab.items() if v["rbbb"]] == [10]
    assert sorted(i for i, v in lab.items() if v["lbbb"]) == [51, 83]
    assert sorted(i for i, v in lab.items() if v["pacing"]) == [34, 90]
    # "Incomplete right bundle branch block" contains "complete right bundle branch block": it must not count
    (tmp_path / "ludb.csv").write_text(
        'ID,Conduction abnormalities,Hypertrophies,Cardiac pacing\n'
        '1,"Incomplete right bundle branch block",,\n'
        '2,"Left anterior hemiblock\nComplete right bundle branch block",'
        '"Left atrial hypertrophy\nLeft ventricular hypertrophy",\n'
        '4,"Complete left bundle branch block",,\n')
    lab = ludb.diagnoses(tmp_path)
    assert set(lab) == {1, 2}  # id 4 is held out: its row is dropped as it is read
    assert not lab[1]["rbbb"] and lab[2]["rbbb"] and lab[2]["lvh"] and not lab[1]["lvh"]


def test_report_st_depression_leads():
    p = ptbxl_labels.parse_report("sinus rhythm. st segments are depressed in i, ii, avl, v5,6. t waves are inverted "
                                  "in i, avl and flat in ii.")
    assert set(p.st_depression.leads) == {"I", "II", "aVL", "V5", "V6"} and set(p.leads) == {"I", "aVL"}
    p = ptbxl_labels.parse_report("tachykardes vorhofflimmern lagetyp normal st-senkung deszendierend in v5-6 t neg in "
                                  "v5-6 und lateral kammerhypertrophie lvh")
    assert set(p.st_depression.leads) == {"V5", "V6"}


def test_ludb_held_out_ids_refused():
    ids = ludb.record_ids(ludb.find_ludb(SAMPLES / "ludb"))
    assert ids and not [i for i in ids if i % 4 == 0]
    with pytest.raises(ValueError):
        ludb.read_record(SAMPLES / "ludb", 4)
    with pytest.raises(ValueError):
        ludb.record_ids(SAMPLES / "ludb", records=[1, 8])
    assert set(ludb.diagnoses(SAMPLES / "ludb")) <= set(range(1, 201)) - set(range(4, 201, 4))


def test_ptbxl_fold_10_dropped(tmp_path):
    src = (SAMPLES / "ptbxl" / "ptbxl_database.csv").read_text().splitlines()
    header, first = src[0], src[1]
    cols = header.split(",")
    # the same row again as fold 10 with another id: it must not come back
    import csv
    import io

    row = next(csv.reader(io.StringIO(first)))
    row[cols.index("ecg_id")] = "99999"
    row[cols.index("strat_fold")] = "10"
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    (tmp_path / "ptbxl_database.csv").write_text("\n".join(src) + "\n" + buf.getvalue())
    ids = [r.ecg_id for r in ptbxl_labels.load_rows(tmp_path)]
    assert 99999 not in ids and len(ids) == len(src) - 1
