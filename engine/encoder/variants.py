"""Encoder variants (architecture hyper-parameters) and the model's input contract. No torch here.

`coca-b50` is the public ECG-CoCa signal tower (docs/SPEC.md §6); `coca-s50` is a small tower with the same input and
the same key layout, sized to train on 2 CPU cores in minutes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# The training data of ECG-CoCa is MIMIC-IV-ECG, whose lead order puts aVF before aVL (PTB-XL and our canonical order
# put aVL first). Feeding the canonical order silently swaps two leads, so every input goes through the adapter.
MODEL_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
MODEL_FS_HZ = 500.0
MODEL_SECONDS = 10.0
MODEL_SAMPLES = 5000
# Surface ECG deflections stay within ~±10 mV; pacing spikes reach a few tens. Beyond this the units are wrong
# (microvolts sent as millivolts), which neither model could notice.
MAX_PLAUSIBLE_MV = 50.0


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    width: int
    layers: int
    heads: int
    mlp: int
    embed_dim: int
    patch: int = 50
    n_leads: int = len(MODEL_LEADS)
    n_samples: int = MODEL_SAMPLES

    @property
    def n_patches(self) -> int:
        return self.n_samples // self.patch

    @property
    def n_tokens(self) -> int:
        return self.n_patches + 1  # + CLS

    def flops_per_ecg(self) -> dict[str, float]:
        """Forward FLOPs for one ECG (2 per multiply-add), by part; the basis gpu_check prints."""
        t, w = self.n_tokens, self.width
        conv = 2.0 * self.n_patches * self.n_leads * self.patch * w
        qkv = 2.0 * t * w * 3 * w
        scores = 2.0 * t * t * w  # Q @ K^T over all heads
        mix = 2.0 * t * t * w  # softmax(.) @ V
        out = 2.0 * t * w * w
        mlp = 2.0 * 2 * t * w * self.mlp
        per_block = qkv + scores + mix + out + mlp
        proj = 2.0 * w * self.embed_dim
        parts = {"conv1": conv, "blocks": per_block * self.layers, "proj": proj}
        parts["total"] = sum(parts.values())
        return parts

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, EncoderConfig] = {
    "coca-b50": EncoderConfig("coca-b50", width=768, layers=12, heads=12, mlp=3072, embed_dim=512),
    # 128 wide, 4 blocks: ~0.9 M parameters, a few MB on disk, one training epoch over ~1,400 ECGs in well under a
    # minute on 2 cores.
    "coca-s50": EncoderConfig("coca-s50", width=128, layers=4, heads=4, mlp=512, embed_dim=128),
}


def get_variant(name: str) -> EncoderConfig:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown encoder variant {name!r}; known: {', '.join(VARIANTS)}") from None
