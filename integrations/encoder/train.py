"""Train the small encoder and its triage head on PTB-XL folds 1–7 + LUDB, select on validation, report on test.

    train("../shared/data", "out/triage-s50")   # ~5–10 min on 2 CPU cores

Writes to out_dir: encoder.onnx + encoder.json (manifest, with the head and its thresholds), encoder.pt (torch
weights in the public layout), metrics.json, MODEL_CARD.md. With ship_to, also the small shippable subset (ONNX,
manifest, card, metrics; no torch weights) there. The measured TWI criteria stay primary: see triage_head.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.encoder.checkpoint import save_weights
from engine.encoder.metrics import binary_report
from engine.encoder.torch_model import TriageModel, build_model, count_parameters
from engine.encoder.triage_head import HeadThresholds
from integrations.encoder import training_data as td
from integrations.encoder.export import export_onnx
from integrations.encoder.model_card import write_model_card

AUX_WEIGHT = 0.5  # the superclass task helps the encoder; the two head outputs are what we ship


def train(data_dir: str | Path, out_dir: str | Path, *, variant: str = "coca-s50", seed: int = 0, epochs: int = 12,
          batch_size: int = 32, lr: float = 5e-4, weight_decay: float = 0.05, n_boot: int = 1000, workers: int = 2,
          max_minutes: float | None = None, cache_dir: str | Path | None = None, ship_to: str | Path | None = None,
          log=print) -> dict[str, Any]:
    """Returns the metrics dict (also written to out_dir/metrics.json). Deterministic for a given seed and machine.

    About 13 s per epoch on an idle 2-core machine (12 epochs + loading + export: ~3–4 min; the first run also adapts
    the signals, ~40 s, then caches them). max_minutes stops early on a busy machine, at the cost of determinism.
    """
    t_start = time.monotonic()
    load_start = os.getloadavg()[0]  # the card says how busy the machine was: wall-clock depends on it
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    items = td.find_items(Path(data_dir))
    x_all = _signals(items, workers, cache_dir, log)
    labels = {
        "twi": np.array([it.twi for it in items], dtype=np.float32),
        "ischemic": np.array([it.ischemic for it in items], dtype=np.float32),
        "aux": np.array([it.aux for it in items], dtype=np.float32),
    }
    split = np.array([it.split for it in items])
    idx = {s: np.flatnonzero(split == s) for s in td.SPLITS}
    data_summary = _data_summary(items, labels, idx)
    log("data: " + ", ".join(f"{s} {len(idx[s])}" for s in td.SPLITS) + f" (load {time.monotonic() - t_start:.0f} s)")

    model = build_model(variant, head=True, aux_outputs=len(td.SUPERCLASSES), seed=seed)
    tr = idx["train"]
    pos_weight = {k: _pos_weight(labels[k][tr]) for k in ("twi", "ischemic")}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = int(np.ceil(len(tr) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    rng = np.random.default_rng(seed)
    history, best = [], (float("inf"), -1, None)
    stopped_early = False
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(tr)
        losses = []
        for i in range(0, len(order), batch_size):
            b = order[i:i + batch_size]
            xb = torch.from_numpy(_augment(x_all[b].astype(np.float32), rng))
            loss = _loss(model, xb, {k: v[b] for k, v in labels.items()}, pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        val_loss = _eval_loss(model, x_all, labels, idx["val"], pos_weight)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                        "elapsed_s": round(time.monotonic() - t_start, 1)})
        log(f"epoch {epoch + 1}/{epochs}: train {np.mean(losses):.4f} val {val_loss:.4f} "
            f"({time.monotonic() - t_start:.0f} s)")
        if val_loss < best[0]:
            best = (val_loss, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        over = max_minutes is not None and (time.monotonic() - t_start) / 60 > max_minutes
        if over and epoch + 1 < epochs:
            stopped_early = True
            log(f"stopping after epoch {epoch + 1}: time budget of {max_minutes} min spent")
            break
    model.load_state_dict(best[2])
    model.eval()
    save_weights(model, out_dir / "encoder.pt")  # first, so that nothing after this can lose the training

    probs = _predict(model, x_all)
    thresholds = HeadThresholds()
    test = idx["test"]
    metrics: dict[str, Any] = {
        "variant": variant, "seed": seed, "parameters": count_parameters(model.ecg) + count_parameters(model.head),
        "selected_epoch": best[1], "epochs_run": len(history), "stopped_early_for_time": stopped_early,
        "history": history, "data": data_summary, "pos_weight": pos_weight,
        "test": {
            "twi_present": binary_report(labels["twi"][test], probs["twi"][test], n_boot=n_boot, seed=seed),
            "ischemic_vs_secondary": binary_report(labels["ischemic"][test], probs["ischemic"][test],
                                                   n_boot=n_boot, seed=seed),
            "aux_superclasses": {c: binary_report(labels["aux"][test, j], probs["aux"][test, j], n_boot=200, seed=seed)
                                 for j, c in enumerate(td.SUPERCLASSES)},
        },
        "validation": {
            "twi_present": binary_report(labels["twi"][idx["val"]], probs["twi"][idx["val"]], n_boot=200, seed=seed),
            "ischemic_vs_secondary": binary_report(labels["ischemic"][idx["val"]], probs["ischemic"][idx["val"]],
                                                   n_boot=200, seed=seed),
        },
        "thresholds": thresholds.__dict__,
        "hardware": {"cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
                     "load_avg_1min": [load_start, os.getloadavg()[0]]},
    }
    manifest = export_onnx(variant, out_dir / "encoder.onnx", model=model, extra={
        "head": {"outputs": ["twi_present", "ischemic_vs_secondary"], "activation": "sigmoid", "output": "scores",
                 "thresholds": thresholds.__dict__},
        "training": {"seed": seed, "selected_epoch": best[1], "data": "PTB-XL folds 1-7 + LUDB (id % 10 not in 7, 9)",
                     "model_card": "MODEL_CARD.md"},
    })
    metrics["export"] = {"onnx_sha256": manifest["onnx"]["sha256"], "onnx_bytes": manifest["onnx"]["bytes"],
                         "parity_max_abs_diff": manifest["export_check"].get("max_abs_diff")}
    metrics["train_seconds"] = round(time.monotonic() - t_start, 1)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(out_dir / "MODEL_CARD.md", metrics, manifest)
    if ship_to:
        _ship(out_dir, Path(ship_to))
    log(f"done in {metrics['train_seconds']:.0f} s: {out_dir}")
    return metrics


def _signals(items: list[td.Item], workers: int, cache_dir: str | Path | None, log) -> np.ndarray:
    """Adapted signals, cached as float16 (0.5 µV steps at 1 mV: far below what matters), keyed by the file list and
    by the adapter's code and input contract, so a changed adapter never reuses arrays it did not make."""
    key = hashlib.sha256("\n".join([*(str(it.path) for it in items), _adapter_fingerprint()]).encode()).hexdigest()[:16]
    cache = Path(cache_dir or Path.home() / ".cache" / "twiwatch" / "train") / f"signals-{key}.npy"
    if cache.is_file():
        log(f"signals from cache {cache}")
        return np.load(cache)
    x = td.load_signals(items, workers).astype(np.float16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, x)
    return x


def _adapter_fingerprint() -> str:
    from engine import resample
    from engine.encoder import adapter, variants

    sources = (Path(m.__file__).read_bytes() for m in (adapter, resample, variants, td))
    return hashlib.sha256(b"".join(sources)).hexdigest()


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gain, a time shift, baseline wander, noise, and (sometimes) absent leads, as the adapter would zero them."""
    b, leads, n = x.shape
    x = x * rng.uniform(0.8, 1.2, (b, 1, 1)).astype(np.float32)
    for i in range(b):
        x[i] = np.roll(x[i], int(rng.integers(-250, 251)), axis=1)
        if rng.random() < 0.1:
            x[i, rng.choice(leads, int(rng.integers(1, 7)), replace=False)] = 0.0
    t = np.arange(n, dtype=np.float32) / 500.0
    freq, phase = rng.uniform(0.05, 0.5, (b, 1, 1)), rng.uniform(0, 2 * np.pi, (b, 1, 1))
    wander = 0.1 * rng.random((b, 1, 1)) * np.sin(2 * np.pi * freq * t + phase)
    return (x + wander.astype(np.float32) + rng.normal(0, 0.01, x.shape).astype(np.float32)).astype(np.float32)


def _masked_bce(logits: torch.Tensor, y: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    mask = ~torch.isnan(y)
    if not mask.any():
        return logits.sum() * 0.0
    pw = torch.tensor(pos_weight) if pos_weight else None
    return F.binary_cross_entropy_with_logits(logits[mask], y[mask], pos_weight=pw)


def _loss(model: TriageModel, xb: torch.Tensor, yb: dict[str, np.ndarray],
          pos_weight: dict[str, float]) -> torch.Tensor:
    emb, _, logits = model(xb)
    aux = model.aux(emb)
    return (_masked_bce(logits[:, 0], torch.from_numpy(yb["twi"]), pos_weight["twi"])
            + _masked_bce(logits[:, 1], torch.from_numpy(yb["ischemic"]), pos_weight["ischemic"])
            + AUX_WEIGHT * _masked_bce(aux, torch.from_numpy(yb["aux"])))


@torch.no_grad()
def _eval_loss(model: TriageModel, x: np.ndarray, labels: dict[str, np.ndarray], rows: np.ndarray,
               pos_weight: dict[str, float], batch: int = 64) -> float:
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), batch):
        r = rows[i:i + batch]
        total += float(_loss(model, torch.from_numpy(x[r].astype(np.float32)), {k: v[r] for k, v in labels.items()},
                             pos_weight)) * len(r)
        n += len(r)
    return total / max(n, 1)


@torch.no_grad()
def _predict(model: TriageModel, x: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    heads, aux = [], []
    for i in range(0, len(x), batch):
        emb, _, logits = model(torch.from_numpy(x[i:i + batch].astype(np.float32)))
        heads.append(torch.sigmoid(logits).numpy())
        aux.append(torch.sigmoid(model.aux(emb)).numpy())
    h = np.concatenate(heads)
    return {"twi": h[:, 0], "ischemic": h[:, 1], "aux": np.concatenate(aux)}


def _pos_weight(y: np.ndarray) -> float:
    y = y[~np.isnan(y)]
    pos = float(y.sum())
    return float(min(20.0, (y.size - pos) / pos)) if pos else 1.0


def _data_summary(items: list[td.Item], labels: dict[str, np.ndarray], idx: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for s, rows in idx.items():
        twi, isc = labels["twi"][rows], labels["ischemic"][rows]
        out[s] = {
            "records": int(len(rows)), "patients": len({items[r].patient for r in rows}),
            "ptbxl": int(sum(items[r].dataset == "ptbxl" for r in rows)),
            "ludb": int(sum(items[r].dataset == "ludb" for r in rows)),
            "twi_positive": int(np.nansum(twi)), "twi_labelled": int((~np.isnan(twi)).sum()),
            "ischemic": int(np.nansum(isc)), "secondary": int(((isc == 0) & ~np.isnan(isc)).sum()),
        }
    return out


def _ship(out_dir: Path, ship_to: Path) -> None:
    """The shippable subset: no torch weights (the manifest's weights entry is dropped to match)."""
    ship_to.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((out_dir / "encoder.json").read_text())
    fused = (manifest["onnx"].get("ort_cpu") or {}).get("file")
    for name in ("encoder.onnx", "MODEL_CARD.md", "metrics.json", *([fused] if fused else [])):
        shutil.copy2(out_dir / name, ship_to / name)
    manifest["weights"] = None
    (ship_to / "encoder.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.encoder.train DATA_DIR OUT_DIR [--ship-to models/triage-s50]`
    (until `twiwatch train`)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--variant", default="coca-s50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--ship-to", default=None)
    a = ap.parse_args(argv)
    train(a.data_dir, a.out_dir, variant=a.variant, seed=a.seed, epochs=a.epochs, ship_to=a.ship_to)


if __name__ == "__main__":
    main()
