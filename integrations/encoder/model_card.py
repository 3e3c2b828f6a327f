"""MODEL_CARD.md for a trained triage model, written from its metrics and manifest (so the card cannot drift)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _ci(r: dict[str, Any], key: str) -> str:
    value, ci = r.get(key), r.get(f"{key}_ci95")
    if value is None or value != value:  # NaN: one class only
        return "n/a"
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.2f}"


def _row(name: str, r: dict[str, Any]) -> str:
    sens = f"{r['sensitivity']:.2f}" if r["sensitivity"] == r["sensitivity"] else "n/a"
    spec = f"{r['specificity']:.2f}" if r["specificity"] == r["specificity"] else "n/a"
    return (f"| {name} | {r['positives']} / {r['negatives']} | {_ci(r, 'auroc')} | {_ci(r, 'average_precision')} "
            f"| {sens} / {spec} |")


def _fused_line(fused: dict[str, Any] | None) -> str:
    if not fused or not fused.get("file"):
        why = (fused or {}).get("why_not", "not written by this export")
        return f"ONNX Runtime CPU runs the portable graph (no fused graph: {why})."
    names = ", ".join(f"{k} {v}" for k, v in fused["fusions"].items())
    return (f"ONNX Runtime CPU runs `{fused['file']}`, the same model with ONNX Runtime's fusions ({names}), "
            f"sha256 `{fused['sha256'][:16]}…`, max abs diff vs torch {fused['export_check']['max_abs_diff']}.")


def write_model_card(path: Path, m: dict[str, Any], manifest: dict[str, Any]) -> Path:
    d, t = m["data"], m["test"]
    cfg = manifest["config"]
    split_rows = "\n".join(
        f"| {s} | {v['records']} ({v['ptbxl']} PTB-XL, {v['ludb']} LUDB) | {v['patients']} | {v['twi_positive']} of "
        f"{v['twi_labelled']} | {v['ischemic']} / {v['secondary']} |" for s, v in d.items())
    aux = "\n".join(_row(c, r) for c, r in t["aux_superclasses"].items())
    early = " (stopped early: time budget)" if m["stopped_early_for_time"] else ""
    load_avg = m["hardware"].get("load_avg_1min")
    load = f", shared with other jobs (1-min load average {load_avg[0]:.1f} at start, {load_avg[1]:.1f} at end)" \
        if load_avg else ""
    text = f"""# Triage model card: `{m['variant']}` encoder + triage head

**Research only. Not for clinical use.** The head's outputs are never findings: twiwatch's measured TWI criteria
(docs/SPEC.md §4, `engine.analyze`) are the primary evidence, and `engine.encoder.triage_head.head_disagrees` only \
says when
the head contradicts them.

## Model
- Encoder: ECG-CoCa signal-tower architecture (docs/SPEC.md §6), small variant: width {cfg['width']}, {cfg['layers']} \
blocks, {cfg['heads']} heads,
  MLP {cfg['mlp']}, patch {cfg['patch']}, embedding {cfg['embed_dim']}; {m['parameters']:,} parameters with the head. \
Trained from scratch here (the public ECG-CoCa checkpoint is not reachable from this
  project); same input contract and key layout as `coca-b50`.
- Input: (12, 5000) float32, 500 Hz, 10 s, raw mV, lead order {', '.join(manifest['input']['lead_order'])}
  (aVF before aVL), made by `engine.encoder.adapter.adapt` (resampling, last 10 s, zero-padding, zero for absent leads).
- Head: linear on the embedding, two sigmoid outputs: `twi_present` (PTB-XL INVT) and `ischemic_vs_secondary`.
  Abstention band used by `head_disagrees`: TWI < {m['thresholds']['twi_low']} absent, ≥ {m['thresholds']['twi_high']} \
present;
  ischemic < {m['thresholds']['ischemic_low']} secondary, ≥ {m['thresholds']['ischemic_high']} ischemic (fixed, not \
tuned: the validation split has
  too few positives to tune anything; the sensitivity/specificity columns below use 0.5).
- Export: ONNX opset {manifest['onnx']['opset']} ({manifest['onnx']['exporter']} exporter), dynamic batch,
  sha256 `{manifest['onnx']['sha256'][:16]}…`; torch vs ONNX Runtime max abs diff at export
  {manifest['export_check'].get('max_abs_diff')}.
  {_fused_line(manifest['onnx'].get('ort_cpu'))}

## Data and splits (patient-disjoint)
- PTB-XL v1.0.3 slice (CC BY 4.0; Wagner et al., Sci Data 7:154, 2020), ecg_id 1–1999, folds 1–9 only; 500 Hz
  records where the slice has them (ids ≤ 500), else 100 Hz upsampled by the adapter. Split by `strat_fold`
  (PTB-XL keeps each patient in one fold): 1–7 train, 8 validation, 9 test. Fold 10 is held out and never read.
- LUDB v1.0.1 (ODC-By 1.0; Kalyakulina et al., arXiv 1809.03393): the 150 development records (ids not divisible
  by 4), one person per record; split by id: id % 10 == 9 test, == 7 validation, else train. LUDB has no
  T-inversion label, so it trains only the ischemic-vs-secondary output.
- Labels: `twi_present` = `INVT` in scp_codes (likelihood 0 = present, unknown likelihood); `ischemic_vs_secondary`
  = 1 for ISC*/INJ* (LUDB: ischemia/STEMI/NSTEMI) without a secondary cause, 0 for CLBBB/CRBBB/LVH/WPW/PACE (LUDB:
  complete LBBB/RBBB, LVH, ventricular pacing) without an ischemic code, unlabelled otherwise. This second label is a
  proxy over all ECGs, not only those with TWI (only ~40 INVT ECGs exist in the slice). Auxiliary training target
  (not shipped): PTB-XL diagnostic superclasses.

| split | records | patients | TWI positives | ischemic / secondary |
|---|---|---|---|---|
{split_rows}

## Training
Seed {m['seed']}; AdamW, one-cycle LR, {m['epochs_run']} epoch(s) run{early},
epoch {m['selected_epoch']} selected by validation loss (all outputs, including the auxiliary one: \
{d['val']['twi_positive']} validation TWI
positives cannot select anything); augmentation: gain, time shift, baseline wander, noise, random
absent leads (so zero-filled leads are not entirely unseen). {m['train_seconds']:.0f} s wall-clock on
{m['hardware']['cpus']} CPU cores{load} (torch {m['hardware']['torch']}); an epoch takes about 13 s on an idle machine
of this kind, and the time grows with other load. Reproduce (same seed and machine, same weights):
`python -m integrations.encoder.train ../shared/data OUT --ship-to models/triage-s50`.

## Test results (PTB-XL fold 9 + LUDB test records), 95 % percentile-bootstrap CIs over records

| output | positives / negatives | AUROC [95 % CI] | average precision [95 % CI] | sens / spec at 0.5 |
|---|---|---|---|---|
{_row('twi_present', t['twi_present'])}
{_row('ischemic_vs_secondary', t['ischemic_vs_secondary'])}

Auxiliary superclasses (the encoder's representation; more labels, so narrower intervals):

| superclass | positives / negatives | AUROC [95 % CI] | average precision [95 % CI] | sens / spec at 0.5 |
|---|---|---|---|---|
{aux}

For orientation only (their data, their task, not comparable): a Qwen2-VL-2B RL model separated ischemic from
non-ischemic TWI with AUROC 0.842 in-domain and 0.816 out-of-domain (JMIR Med Inform 2026;14:e87227).

## Limits (read before using a number from this card)
- The data are tiny: {d['test']['twi_positive']} TWI-positive ECGs in the test split, {d['train']['twi_positive']} in \
training.
  The TWI AUROC interval above is wide because of that, and its point estimate is weak evidence either way.
- Labels are cardiologists' PTB-XL statements, not per-lead measurements; INVT carries no likelihood. The ischemic
  label is a proxy (ischemic ST-T statements vs a secondary-cause statement on any ECG).
- Two collections only (PTB-XL, recorded 1989–1996; LUDB, one Russian hospital); no external validation; the held-out \
PTB-XL fold 10, the held-out LUDB records and the project's evaluation set were not used.
- 100 Hz PTB-XL records are upsampled: their content above 45 Hz is absent, unlike live 500 Hz input.
- Absent leads are zeros; with more than a few absent, treat the scores as unusable (the adapter's mask says which).
- Trained from scratch on ~1.4k ECGs: not the ECG-CoCa foundation model. Load the public checkpoint into `coca-b50`
  (`twiwatch model export --variant coca-b50 --checkpoint PATH`) for real embeddings; this head is not for it.
"""
    path.write_text(text)
    return path
