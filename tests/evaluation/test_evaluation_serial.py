"""New vs prior TWI on PTB-XL serial ECGs (evaluation/serial.py): pairing and references on hand-built rows, scoring
with patient-level bootstrap on hand-built pairs, a real run on the shipped samples (8 patients with serial ECGs) and on
a small PTB-XL-layout folder built from sample files (500 Hz pairs, fold 10 never read), and the two entry points
(`python -m evaluation` and `twiwatch evaluate`) accepting the same options.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation import ptbxl_labels  # noqa: E402
from evaluation.ptbxl_labels import PtbxlRow  # noqa: E402
from evaluation.serial import (  # noqa: E402
    CALLS,
    REF_CLASSES,
    consecutive_pairs,
    recording_dates,
    reference_class,
    score,
    serial_patients,
)

pytest.importorskip("neurokit2")

SAMPLES = ROOT / "samples"


def _row(ecg_id: int, patient: str, *, fold: int = 1, codes: dict | None = None, report: str = "") -> PtbxlRow:
    return PtbxlRow(ecg_id=ecg_id, patient_id=patient, sex=None, fold=fold, codes=codes or {}, report=report,
                    filename_lr="", filename_hr="")


# --- pairing and references on hand-built rows ---------------------------------------------------------------------

def test_pairs_follow_recording_date_then_ecg_id():
    rows = [_row(5, "a"), _row(3, "a"), _row(9, "a"), _row(4, "b"), _row(7, "c"), _row(8, "c")]
    # patient a: id 9 was recorded first; 3 and 5 on the same second (tie broken by ecg_id)
    dates = {9: "1990-01-01 08:00:00", 3: "1990-02-01 08:00:00", 5: "1990-02-01 08:00:00",
             4: "1990-01-01 00:00:00", 7: "1991-05-05 10:00:00", 8: "1991-05-04 10:00:00"}
    patients = serial_patients(rows, dates)
    assert list(patients) == ["a", "c"]  # b has one ECG; order of patients = their first ecg_id (3 < 7)
    assert [r.ecg_id for r in patients["a"]] == [9, 3, 5]
    assert [r.ecg_id for r in patients["c"]] == [8, 7]
    pairs = consecutive_pairs(patients)
    assert [(p.patient_id, p.prior.ecg_id, p.current.ecg_id) for p in pairs] == [("a", 9, 3), ("a", 3, 5),
                                                                                ("c", 8, 7)]


def test_serial_patients_refuses_held_out_rows():
    with pytest.raises(ValueError, match="fold 10"):
        serial_patients([_row(1, "a"), _row(2, "a", fold=10)], {})


def test_reference_class_truth_table():
    assert reference_class(False, True) == "new"
    assert reference_class(True, True) == "persistent"
    assert reference_class(False, False) == "negative"
    assert reference_class(True, False) == "negative"  # resolved: current negative whatever the prior


def test_report_text_and_invt_references_on_rows():
    from evaluation.serial import REFERENCES

    r = _row(1, "a", codes={"INVT": 0.0}, report="sinus rhythm. t waves are inverted in ii, iii, avf.")
    q = _row(2, "a", codes={"NORM": 100.0}, report="t waves are not inverted. normal ecg.")
    assert REFERENCES["invt"](r) and REFERENCES["report_text"](r)
    assert not REFERENCES["invt"](q) and not REFERENCES["report_text"](q)


def _pair(patient: str, prior: int, current: int, call: str) -> dict:
    return {"patient_id": patient, "prior": prior, "current": current, "calls": {"ours": {"novelty": call}}}


def test_score_by_hand():
    # ecg ids -> TWI-positive; pairs: (prior, current, our call)
    ref = {1: False, 2: True, 3: True, 4: False, 5: True, 6: True, 7: False, 8: False}
    pairs = [_pair("p", 1, 2, "new"),         # ref new, called new: TP
             _pair("p", 2, 3, "new"),         # ref persistent, called new: counts against PPV only
             _pair("q", 4, 5, "unknown"),     # ref new, missed
             _pair("r", 6, 7, "none"),        # ref negative (resolved), not called new: TN
             _pair("r", 7, 8, "new")]         # ref negative, called new: FP
    s = score(pairs, ref, ["ours"], n_boot=200)
    assert (s["new"], s["persistent"], s["negative"], s["negative_prior_positive"]) == (2, 1, 2, 1)
    m = s["methods"]["ours"]
    assert m["sensitivity"]["value"] == pytest.approx(1 / 2)
    assert m["specificity"]["value"] == pytest.approx(1 / 2)
    assert m["ppv"]["value"] == pytest.approx(1 / 3)  # 3 "new" calls, one reference-new
    assert m["called_new"] == 3
    assert m["calls"]["persistent"] == {"new": 1, "persistent": 0, "unknown": 0, "none": 0}
    assert m["calls"]["new"] == {"new": 1, "persistent": 0, "unknown": 1, "none": 0}
    assert m["calls"]["negative"] == {"new": 1, "persistent": 0, "unknown": 0, "none": 1}


def test_bootstrap_resamples_patients_not_pairs():
    # patient a: ten reference-new pairs all called new; b and c: one each, missed. Sensitivity 10/12.
    # Resampling patients, a is absent from (2/3)^3 = 30 % of the resamples (sensitivity 0 there), so the lower
    # bound is 0; resampling the 12 pairs independently would almost never give 0.
    ref = {i: i % 2 == 1 for i in range(100)}  # odd ids positive, even negative: (even, odd) pairs are "new"
    pairs = [_pair("a", 2 * k, 2 * k + 1, "new") for k in range(10)]
    pairs += [_pair("b", 40, 41, "none"), _pair("c", 42, 43, "persistent")]
    m = score(pairs, ref, ["ours"], n_boot=2000)["methods"]["ours"]["sensitivity"]
    assert m["value"] == pytest.approx(10 / 12) and m["den"] == 12
    assert m["ci"][0] == 0.0 and m["ci"][1] == 1.0


def test_recording_dates_skip_fold_10(tmp_path):
    src = list(csv.reader(io.StringIO((SAMPLES / "ptbxl" / "ptbxl_database.csv").read_text())))
    header = src[0]
    extra = list(src[1])
    extra[header.index("ecg_id")], extra[header.index("strat_fold")] = "1", "10"  # a fold-10 row, ecg_id 1
    extra[header.index("recording_date")] = "2099-01-01 00:00:00"
    with open(tmp_path / "ptbxl_database.csv", "w", newline="") as f:
        csv.writer(f).writerows(src + [extra])
    rows = ptbxl_labels.load_rows(tmp_path)
    dates = recording_dates(rows + [_row(1, "x")])  # even asked for id 1, the fold-10 row's date was never read
    assert 1 not in dates and len(dates) == len(rows) == len(src) - 1
    assert dates[2] == "1984-11-14 12:55:37"


# --- real runs ------------------------------------------------------------------------------------------------------

# The shipped samples' serial patients (samples/ptbxl/ptbxl_database.csv), pairs in recording order, with
# (INVT prior, INVT current) and (report text prior, report text current):
SAMPLE_PAIRS = [
    ("ptbxl-641", 266, 281),  # INVT T->F, text T->F: negative / negative
    ("ptbxl-340", 273, 298),  # INVT F->T: new; text T->T: persistent
    ("ptbxl-382", 593, 613),  # INVT T->F: negative; text T->T (slightly inverted): persistent
    ("ptbxl-566", 941, 953),  # negative / negative
    ("ptbxl-637", 1052, 1111),  # negative / negative
    ("ptbxl-540", 1102, 1107),  # INVT negative; text T->T persistent
    ("ptbxl-555", 1514, 1516),  # negative / negative
    ("ptbxl-555", 1516, 1654),  # INVT negative; text F->T new
    ("ptbxl-361", 1809, 1844),  # INVT F->T new; text F->T new
]


@pytest.fixture(scope="module")
def samples_run(tmp_path_factory):
    from evaluation.serial import run_serial

    out = tmp_path_factory.mktemp("serial") / "serial.json"
    return run_serial(SAMPLES, out, progress=False, methods=("dwt",), workers=2, n_boot=300), out


def test_samples_pairs_and_reference_counts(samples_run):
    report, out = samples_run
    assert json.loads(out.read_text())["ptbxl"]["pairs"] == 9
    px = report["ptbxl"]
    assert (px["serial_patients"], px["serial_ecgs"], px["pairs"]) == (8, 17, 9)
    r100 = px["rates"]["100"]
    assert (r100["patients"], r100["pairs"], r100["ecgs"]) == (8, 9, 17)
    assert [(p["patient_id"], p["prior"], p["current"]) for p in r100["per_pair"]] == SAMPLE_PAIRS
    invt, text = r100["references"]["invt"], r100["references"]["report_text"]
    assert (invt["new"], invt["persistent"], invt["negative"]) == (2, 0, 7)
    assert (text["new"], text["persistent"], text["negative"]) == (2, 3, 4)
    # no serial pair of the samples has both ECGs at 500 Hz (only 266 of them has a 500 Hz file)
    assert px["rates"]["500"]["pairs"] == 0 and px["rates"]["500"]["references"]["invt"]["methods"]["ours"][
        "sensitivity"]["value"] is None


def test_samples_calls_are_consistent(samples_run):
    report, _ = samples_run
    r100 = report["ptbxl"]["rates"]["100"]
    for ref in r100["references"].values():
        for m in ("ours", "nk-dwt"):
            x = ref["methods"][m]
            for k in REF_CLASSES:
                assert sum(x["calls"][k].values()) == ref[k]
            assert x["sensitivity"]["den"] == ref["new"] and x["specificity"]["den"] == ref["negative"]
            assert x["ppv"]["den"] == x["called_new"] == sum(x["calls"][k]["new"] for k in REF_CLASSES)
            for metric in ("sensitivity", "specificity", "ppv"):
                v, (lo, hi) = x[metric]["value"], x[metric]["ci"]
                if v is not None:
                    assert lo - 1e-9 <= v <= hi + 1e-9
    for p in r100["per_pair"]:
        for m, c in p["calls"].items():
            assert c["novelty"] in CALLS
            # "none" exactly when the current ECG has no TWI group; a first-time group needs the prior to decide
            assert (c["novelty"] == "none") == (not c["current_groups"]), (m, p)


def test_samples_novelty_is_the_engines(samples_run):
    """The evaluation's call for a pair is what analyze gives with the prior's summary (the stream's path)."""
    from engine.analyze import analyze

    report, _ = samples_run
    rows = {r.ecg_id: r for r in ptbxl_labels.load_rows(SAMPLES / "ptbxl")}
    p = next(x for x in report["ptbxl"]["rates"]["100"]["per_pair"] if x["current"] == 1844)
    prior = analyze(ptbxl_labels.read_record(SAMPLES / "ptbxl", rows[1809], 100)).summary
    current = analyze(ptbxl_labels.read_record(SAMPLES / "ptbxl", rows[1844], 100), priors=[prior])
    assert p["calls"]["ours"]["novelty"] == current.novelty
    assert p["calls"]["ours"]["current_groups"] == [list(g.leads) for g in current.twi]
    assert p["invt"] == [False, True] and p["report_text"] == [False, True]
    # the evaluation reuses each ECG's summary as the next pair's prior: that is only right while the summary does not
    # depend on the priors the ECG was analysed with
    alone = analyze(ptbxl_labels.read_record(SAMPLES / "ptbxl", rows[1844], 100)).summary
    assert alone.to_dict() == current.summary.to_dict()


def test_samples_markdown(samples_run, capsys):
    from evaluation.__main__ import main

    _, out = samples_run
    main(["markdown", "--serial", str(out)])
    md = capsys.readouterr().out
    assert "8 patients with >= 2 ECGs, 17 ECGs, 9 consecutive pairs" in md
    assert "| 100 Hz | invt | 8/9 | 2/0/7 | ours |" in md
    assert "| 100 Hz | report text | 8/9 | 2/3/4 | nk-dwt |" in md
    assert "NeuroKit2 dwt" in md
    assert "- 100 Hz: 8 patients, 9 pairs, 17 ECGs; 0 pairs with the same recording time to the second" in md


def _layout(tmp_path: Path, rows: list[tuple[int, str, str, int]]) -> Path:
    """A PTB-XL-layout folder from sample files: (ecg_id, patient_id, recording_date, fold) per row; signals copied
    from samples/ptbxl except for fold-10 rows, whose files do not exist (reading one would fail)."""
    src = SAMPLES / "ptbxl"
    with open(src / "ptbxl_database.csv", newline="") as f:
        by_id = {int(r["ecg_id"]): r for r in csv.DictReader(f)}
        header = list(next(iter(by_id.values())).keys())
    out = tmp_path / "ptbxl"
    out.mkdir()
    shutil.copy(src / "scp_statements.csv", out)
    with open(out / "ptbxl_database.csv", "w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        for ecg_id, patient, date, fold in rows:
            r = dict(by_id[ecg_id] if ecg_id in by_id else by_id[2], ecg_id=str(ecg_id), patient_id=patient,
                     recording_date=date, strat_fold=str(fold))
            if fold == 10:
                r["filename_lr"], r["filename_hr"] = (f"records100/09000/{ecg_id:05d}_lr",
                                                      f"records500/09000/{ecg_id:05d}_hr")
            w.writerow(r)
            for name in (r["filename_lr"], r["filename_hr"]):
                if fold != 10 and name:
                    (out / name).parent.mkdir(parents=True, exist_ok=True)
                    for ext in (".hea", ".dat"):
                        shutil.copy(src / (name + ext), out / (name + ext))
    return tmp_path


def test_500hz_pairs_and_fold_10_on_a_built_layout(tmp_path):
    """143 (paced), 256 (CLBBB) and 468 (INVT) have 500 Hz files: made one patient, recorded 256, 143, 468, with a
    fold-10 ECG of the same patient between 143 and 468 that must be neither read nor paired."""
    from evaluation.serial import run_serial

    data = _layout(tmp_path, [(143, "77", "1990-01-02 10:00:00", 1), (256, "77", "1990-01-01 10:00:00", 1),
                              (468, "77", "1990-01-04 10:00:00", 1), (9999, "77", "1990-01-03 10:00:00", 10),
                              (2, "78", "1990-01-01 10:00:00", 1)])
    report = run_serial(data, tmp_path / "s.json", progress=False, methods=(), workers=1, n_boot=100)
    assert report["methods"] == ["ours"] and "not run" in report["neurokit"]
    px = report["ptbxl"]
    assert (px["rows_folds_1_9"], px["serial_patients"], px["pairs"]) == (4, 1, 2)
    for rate in ("100", "500"):
        s = px["rates"][rate]
        assert [(p["prior"], p["current"]) for p in s["per_pair"]] == [(256, 143), (143, 468)]
        invt = s["references"]["invt"]
        assert (invt["new"], invt["persistent"], invt["negative"]) == (1, 0, 1)
        assert s["per_pair"][1]["rate"] == int(rate)
        assert s["days_between"]["median"] == pytest.approx(1.5) and s["pairs_same_recording_time"] == 0


# --- the two entry points -------------------------------------------------------------------------------------------

def _argparse_options(cmd: str) -> set[str]:
    """The options `python -m evaluation CMD` accepts, from the command that entry point runs."""
    import typer

    from evaluation.__main__ import app

    return {o for p in typer.main.get_command(app).commands[cmd].params for o in p.opts}


def _cli_options(cmd: str) -> set[str]:
    import typer

    from stream.cli import app

    group = typer.main.get_command(app).commands["evaluate"]
    return {o for p in group.commands[cmd].params for o in p.opts}


@pytest.mark.parametrize("cmd", ["delineation", "twi", "serial"])
def test_cli_and_module_accept_the_same_options(cmd):
    assert _cli_options(cmd) == _argparse_options(cmd)
    expected = {"--json", "--workers", "--n-boot", "--no-progress", "--methods"}
    expected |= {"delineation": {"--ludb", "--split", "--records", "--plots"},
                 "twi": {"--data", "--limit", "--plots", "--cinc"}, "serial": {"--data", "--limit"}}[cmd]
    assert _cli_options(cmd) == expected


@pytest.mark.parametrize("cmd,options", [
    ("delineation", ["--split", "--records", "--methods", "--workers", "--n-boot", "--no-progress", "--plots"]),
    ("twi", ["--limit", "--methods", "--workers", "--n-boot", "--no-progress", "--plots"]),
    ("serial", ["--data", "--limit", "--methods", "--workers", "--n-boot", "--no-progress"]),
])
def test_cli_help_lists_the_options(cmd, options):
    from typer.testing import CliRunner

    from stream.cli import app

    res = CliRunner().invoke(app, ["evaluate", cmd, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    for o in options:
        assert o in res.output, (cmd, o)


def test_cli_serial_runs_on_samples(tmp_path):
    from typer.testing import CliRunner

    from stream.cli import app

    out = tmp_path / "serial.json"
    res = CliRunner().invoke(app, ["evaluate", "serial", "--data", str(SAMPLES), "--json", str(out), "--limit", "2",
                                   "--methods", "", "--workers", "1", "--n-boot", "50", "--no-progress"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    # the first two serial patients by first ecg_id: 641 (266, 281) and 340 (273, 298)
    assert report["ptbxl"]["serial_patients"] == 2 and report["ptbxl"]["pairs"] == 2
    assert [(p["prior"], p["current"]) for p in report["ptbxl"]["rates"]["100"]["per_pair"]] == [(266, 281),
                                                                                                (273, 298)]
    assert report["methods"] == ["ours"]
