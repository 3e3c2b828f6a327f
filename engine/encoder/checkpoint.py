"""Load the public ECG-CoCa checkpoint layout (or our own weights) from a local file, with a readable report.

Accepted: a dict of tensors, optionally under a `state_dict` key, keys optionally prefixed `module.` (DataParallel),
the tower under `ecg.` (other towers, e.g. the text model, are ignored and counted). Our own files add `head.*`.
Never downloads; `torch.load(weights_only=True)` so a checkpoint cannot run code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.encoder.torch_model import TriageModel, build_model
from engine.encoder.variants import VARIANTS, EncoderConfig, get_variant

TOWER_PREFIX = "ecg."
OWN_PREFIXES = (TOWER_PREFIX, "head.")
_SHOW = 8  # keys listed per category in the message


@dataclass
class LoadReport:
    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model
    ignored_outside_tower: int = 0
    wrapped: bool = False
    stripped_module_prefix: bool = False
    guessed_variant: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def message(self) -> str:
        lines = [f"checkpoint {self.path}: {self.loaded} tensors match"]
        if self.missing:
            lines.append(f"missing {len(self.missing)}: " + _few(self.missing))
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)}: " + _few(self.unexpected))
        if self.mis_shaped:
            shown = ", ".join(f"{k} file {list(a)} vs model {list(b)}" for k, a, b in self.mis_shaped[:_SHOW])
            more = f" (+{len(self.mis_shaped) - _SHOW} more)" if len(self.mis_shaped) > _SHOW else ""
            lines.append(f"mis-shaped {len(self.mis_shaped)}: {shown}{more}")
        if self.ignored_outside_tower:
            lines.append(f"ignored {self.ignored_outside_tower} keys outside '{TOWER_PREFIX}*' (other towers)")
        if self.guessed_variant:
            lines.append(f"the file looks like variant {self.guessed_variant!r}")
        return "; ".join(lines)


class CheckpointError(ValueError):
    """The file is not a loadable checkpoint for this variant; str() is the readable report."""

    def __init__(self, message: str, report: LoadReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The file's tensors with `state_dict` unwrapped and `module.` stripped; the report says which applied."""
    path = Path(path)
    report = LoadReport(path=str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (it is never downloaded: give a local file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; the message is what matters
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is not a readable torch file of tensors: {first_line}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj, report.wrapped = obj["state_dict"], True
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"checkpoint {path} holds no state dict")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key.startswith("module."):
            key, report.stripped_module_prefix = key[len("module."):], True
        state[key] = value
    return state, report


def guess_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The known variant whose tower shapes match conv1 and the number of blocks, if any."""
    conv = state.get(TOWER_PREFIX + "conv1.weight")
    if conv is None or conv.dim() != 3:
        return None
    blocks = {k.split(".")[3] for k in state if k.startswith(TOWER_PREFIX + "transformer.resblocks.")}
    for name, cfg in VARIANTS.items():
        if tuple(conv.shape) == (cfg.width, cfg.n_leads, cfg.patch) and len(blocks) == cfg.layers:
            return name
    return None


def load_into(model: TriageModel, path: str | Path) -> LoadReport:
    """Copy the file's tower (and head, when the model has one) into `model`; CheckpointError unless all fits."""
    state, report = read_state(path)
    return _load_state(model, state, report)


def _load_state(model: TriageModel, state: dict[str, torch.Tensor], report: LoadReport) -> LoadReport:
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(OWN_PREFIXES)}
    ours = {k: v for k, v in state.items() if k.startswith(OWN_PREFIXES)}
    report.ignored_outside_tower = len(state) - len(ours)
    if not ours:
        found = _few(sorted(state), 3)
        raise CheckpointError(f"checkpoint {report.path}: no '{TOWER_PREFIX}*' keys (found e.g. {found})", report)
    report.missing = sorted(expected.keys() - ours.keys())
    report.unexpected = sorted(ours.keys() - expected.keys())
    report.mis_shaped = [(k, tuple(ours[k].shape), tuple(expected[k].shape))
                         for k in sorted(expected.keys() & ours.keys()) if ours[k].shape != expected[k].shape]
    if not report.ok:
        guess = guess_variant(ours)
        report.guessed_variant = guess if guess != model.cfg.name else None
        raise CheckpointError(report.message(), report)
    with torch.no_grad():
        for k, target in expected.items():
            target.copy_(ours[k].to(target.dtype))
    report.loaded = len(expected)
    return report


def load_model(variant: str | EncoderConfig, checkpoint: str | Path | None = None, *, head: bool | None = None,
               seed: int = 0) -> tuple[TriageModel, LoadReport | None]:
    """A model of `variant` in eval mode: from `checkpoint` when given, else seeded random weights.

    head=None: a head exactly when the checkpoint carries `head.*` (the public checkpoint has none; a random head
    would only add noise to the outputs).
    """
    cfg = get_variant(variant) if isinstance(variant, str) else variant
    if checkpoint is None:
        return build_model(cfg, head=bool(head), seed=seed), None
    state, report = read_state(checkpoint)
    if head is None:
        head = any(k.startswith("head.") for k in state)
    model = build_model(cfg, head=head, seed=seed)
    _load_state(model, state, report)
    return model.eval(), report


def save_weights(model: TriageModel, path: str | Path) -> Path:
    """Our weights in the public layout (`ecg.*`, plus `head.*`); the training-only aux head is left out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(OWN_PREFIXES)}
    torch.save(state, path)
    return path


def _few(keys: list[str], n: int = _SHOW) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
