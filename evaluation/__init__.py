"""Evaluation of the engine against cardiologist annotations (LUDB) and dataset labels (PTB-XL), with NeuroKit2 as the
baseline run on the same records in the same run. Research use only.

Entry points (the CLI calls these): `evaluation.delineation.run_delineation`, `evaluation.twi.run_twi` and
`evaluation.serial.run_serial`; `python -m evaluation {delineation,twi,serial,markdown} ...` and
`twiwatch evaluate ...` run the same commands (evaluation/cli.py).

Held-out data is never read: LUDB ids divisible by 4 and PTB-XL fold 10 (docs/SPEC.md §7) are skipped before any file of
theirs is opened (`evaluation.ludb.is_held_out`, `evaluation.ptbxl_labels.HELD_OUT_FOLD`).
"""
