"""Build the small real sample set shipped in samples/ from ../shared/data (a development step, run once).

The project never reads ../shared at run time: the demo and the tests use only what this script copies.
Picks: LUDB records covering normal, LVH, ischemia, RBBB, LBBB and pacing (all from the non-held-out ids);
PTB-XL patients with serial ECGs where one ECG carries INVT (for new-vs-prior), plus 500 Hz INVT/BBB/paced/WPW
records; only folds 1-9 (fold 10 is held out). Long monitoring streams: the first 5 minutes of two long recordings
(MIT-BIH 100, MLII + V5 at 360 Hz; CPSC 2021 data_21_8, I + II at 200 Hz), lead names as recorded.
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
OUT = Path(__file__).resolve().parent.parent / "samples"
LUDB_IDS = [1, 3, 6, 7, 10, 11, 15, 18, 21, 34, 51, 83, 90]
PTBXL_SERIAL = [2, 140, 266, 281, 273, 298, 593, 613, 941, 953, 1102, 1107, 1514, 1516, 1654, 1809, 1844, 1052, 1111]
PTBXL_500 = [266, 298, 307, 468, 256, 269, 143, 461]
LUDB_SUFFIXES = [".hea", ".dat", ".i", ".ii", ".iii", ".avr", ".avl", ".avf", ".v1", ".v2", ".v3", ".v4", ".v5", ".v6"]
PTBXL_COLUMNS = ["ecg_id", "patient_id", "age", "sex", "recording_date", "report", "scp_codes", "strat_fold",
                 "filename_lr", "filename_hr"]


def copy_ludb() -> None:
    src = next((SHARED / "ludb").glob("lobachevsky*"))
    dst = OUT / "ludb"
    (dst / "data").mkdir(parents=True, exist_ok=True)
    for rid in LUDB_IDS:
        assert rid % 4 != 0, "LUDB ids divisible by 4 are held out"
        for suffix in LUDB_SUFFIXES:
            shutil.copy2(src / "data" / f"{rid}{suffix}", dst / "data" / f"{rid}{suffix}")
    shutil.copy2(src / "LICENSE.txt", dst / "LICENSE.txt")
    with open(src / "ludb.csv", newline="") as fin, open(dst / "ludb.csv", "w", newline="") as fout:
        reader = csv.DictReader(fin)
        writer = csv.DictWriter(fout, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(row for row in reader if int(row["ID"]) in LUDB_IDS)


def copy_ptbxl() -> None:
    src, dst = SHARED / "ptbxl", OUT / "ptbxl"
    dst.mkdir(parents=True, exist_ok=True)
    wanted = set(PTBXL_SERIAL) | set(PTBXL_500)
    with open(src / "ptbxl_database.csv", newline="") as fin, open(dst / "ptbxl_database.csv", "w", newline="") as fout:
        reader = csv.DictReader(fin)
        writer = csv.DictWriter(fout, fieldnames=PTBXL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in reader:
            ecg_id = int(row["ecg_id"])
            if ecg_id not in wanted:
                continue
            assert row["strat_fold"] != "10", "PTB-XL fold 10 is held out"
            if ecg_id not in PTBXL_500:
                row["filename_hr"] = ""
            writer.writerow(row)
            for name, keep in ((row["filename_lr"], True), (row["filename_hr"], ecg_id in PTBXL_500)):
                if not keep or not name:
                    continue
                for suffix in (".hea", ".dat"):
                    target = dst / (name + suffix)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src / (name + suffix), target)
    shutil.copy2(src / "scp_statements.csv", dst / "scp_statements.csv")
    shutil.copy2(src / "LICENSE.txt", dst / "LICENSE.txt")


# (folder, record, name, start s, seconds, with the beat annotations)
LONG = [("mitdb", "100", "mitdb-100-5min", 0, 300, False),
        ("cpsc2021", "data_21_8", "cpsc2021-21_8-5min", 0, 300, False),
        # ventricular bigeminy and couplets (more V than N beats), for the monitor window's choice of beats
        ("mitdb", "208", "mitdb-208-2min", 480, 120, True)]


def copy_long() -> None:
    """Cut, not resampled: the same digital samples, gains and names, format 16; beat labels where asked."""
    import wfdb

    dst = OUT / "long"
    dst.mkdir(parents=True, exist_ok=True)
    for folder, record, name, start_s, seconds, beats in LONG:
        path = str(SHARED / "long" / folder / record)
        fs = wfdb.rdheader(path).fs
        a, b = int(start_s * fs), int((start_s + seconds) * fs)
        rec = wfdb.rdrecord(path, physical=False, sampfrom=a, sampto=b)
        what = f"first {seconds} s" if start_s == 0 else f"{seconds} s from {start_s} s"
        wfdb.wrsamp(name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, d_signal=rec.d_signal,
                    fmt=["16"] * rec.n_sig, adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(dst),
                    comments=[f"{what} of {folder}/{record} (see samples/README.md)"])
        if beats:
            ann = wfdb.rdann(path, "atr", sampfrom=a, sampto=b - 1, shift_samps=True)
            wfdb.wrann(name, "atr", ann.sample, symbol=ann.symbol, aux_note=ann.aux_note, fs=fs,
                       write_dir=str(dst))


if __name__ == "__main__":
    shutil.rmtree(OUT / "ludb", ignore_errors=True)
    shutil.rmtree(OUT / "ptbxl", ignore_errors=True)
    shutil.rmtree(OUT / "long", ignore_errors=True)
    copy_ludb()
    copy_ptbxl()
    copy_long()
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"samples/: {size / 1e6:.2f} MB")
