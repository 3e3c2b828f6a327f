"""The ECG-CoCa signal tower in PyTorch, written from the architecture in docs/SPEC.md §6, and the triage model around
it.

Parameter names follow the public checkpoint (open_clip naming under `ecg.`), so its state dict loads as is:
conv1 (no bias), class_embedding, positional_embedding, ln_pre, transformer.resblocks.i.{ln_1, attn.in_proj_weight,
attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_post, proj. Attention keeps nn.MultiheadAttention's
packing (q, k, v stacked in in_proj) but calls scaled_dot_product_attention directly: the same numbers, a fused kernel
on GPU (flash/efficient attention in bf16/fp16) and a plain graph for the ONNX exporters. Imported only lazily.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.encoder.variants import EncoderConfig, get_variant

# Head outputs, in order (sigmoid probabilities in the exported graph).
HEAD_OUTPUTS: tuple[str, ...] = ("twi_present", "ischemic_vs_secondary")


class PackedSelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter layout (in_proj_weight/bias, out_proj)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        if torch.onnx.is_in_onnx_export():
            q, k, v = self._export_projections(x)
        else:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # one packed GEMM: fastest in eager
            q, k, v = qkv.view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)  # (b, heads, t, head_dim)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, w))

    def _export_projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same q, k, v as three projections from slices of the packed weight. Only the ONNX graph uses this
        form: it is the pattern ONNX Runtime's attention fusion recognises (integrations.encoder.export writes a fused
        graph for ORT CPU), whereas the packed form leaves a Slice/Squeeze/Transpose chain per block."""
        b, t, w = x.shape
        weights, biases = self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3)
        return tuple(F.linear(x, wt, bs).reshape(b, t, self.heads, w // self.heads).transpose(1, 2)
                     for wt, bs in zip(weights, biases, strict=True))  # type: ignore[return-value]


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU, as open_clip's nn.GELU


class ResidualBlock(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, width: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = PackedSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(cfg.width, cfg.heads, cfg.mlp) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class EcgEncoder(nn.Module):
    """(B, 12, 5000) raw mV -> (embedding (B, embed_dim), tokens before ln_post (B, 101, width))."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1 = nn.Conv1d(cfg.n_leads, w, kernel_size=cfg.patch, stride=cfg.patch, bias=False)
        scale = w ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.n_tokens, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(cfg)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.embed_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches = self.conv1(x).transpose(1, 2)  # (B, 100, width)
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        tokens = torch.cat([cls, patches], dim=1) + self.positional_embedding.to(patches.dtype)
        tokens = self.transformer(self.ln_pre(tokens))
        pooled = self.ln_post(tokens[:, 0])
        return pooled @ self.proj, tokens


class TriageModel(nn.Module):
    """The encoder under `ecg.` (checkpoint layout) and, optionally, a linear triage head on the embedding."""

    def __init__(self, cfg: EncoderConfig, *, head: bool = True, aux_outputs: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.ecg = EcgEncoder(cfg)
        self.head = nn.Linear(cfg.embed_dim, len(HEAD_OUTPUTS)) if head else None
        # Training-only auxiliary targets (PTB-XL superclasses): more signal for a small encoder; never exported.
        self.aux = nn.Linear(cfg.embed_dim, aux_outputs) if aux_outputs else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(embedding, tokens, head logits or None)."""
        emb, tokens = self.ecg(x)
        return emb, tokens, self.head(emb) if self.head is not None else None


class ExportWrapper(nn.Module):
    """What the ONNX graph computes: embedding, head probabilities (if any), tokens (if asked)."""

    def __init__(self, model: TriageModel, *, tokens: bool = False) -> None:
        super().__init__()
        self.model = model
        self.tokens = tokens

    def forward(self, ecg: torch.Tensor):
        emb, tokens, logits = self.model(ecg)
        out = [emb]
        if logits is not None:
            out.append(torch.sigmoid(logits))
        if self.tokens:
            out.append(tokens)
        return tuple(out)


def build_model(variant: str | EncoderConfig, *, head: bool = True, aux_outputs: int = 0,
                seed: int | None = 0) -> TriageModel:
    """A freshly initialised model (seeded, so two builds with the same seed are identical), in eval mode."""
    cfg = get_variant(variant) if isinstance(variant, str) else variant
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TriageModel(cfg, head=head, aux_outputs=aux_outputs)
    else:
        model = TriageModel(cfg, head=head, aux_outputs=aux_outputs)
    return model.eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
