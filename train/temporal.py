"""Temporal heads for clip models: ``[N, T, D]`` frame embeddings -> one clip embedding.

- ``mean``: the average over frames. It cannot see order: a digit moving left and one moving right
  through the same positions give the same mean.
- ``attention``: learned temporal position embeddings, then multi-head attention pooling (one
  learned scoring vector per head over ``D / heads`` channels). What a frame shows decides its
  weight, and the position embedding it carries says *when* that was, so order becomes visible.
- ``transformer``: a small pre-norm transformer encoder over the frames (with position
  embeddings), read out by attention pooling (a plain mean over its tokens learned the axis of
  motion but not its order on ``moving_digits`` in 10 epochs: 54% vs 100%).
- :class:`CrossTaskAttention`: two tasks (EPIC-style verb and noun) each get their own projection
  of the frame tokens, and each attends to the other's tokens (bidirectional cross-attention)
  before its own attention pooling.

Every head ends in the same small projection (LayerNorm, Linear, GELU: the reference student's
"feature projection") so the clip embedding is a learned, non-linear function of the pooled
frames for every kind of pooling, and comparisons between poolings are fair. Attention is written
with plain matmul/softmax so every exporter (ONNX, TFLite, CoreML) converts it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POOLINGS = ("mean", "attention", "transformer")


def projection(dim: int) -> nn.Module:
    """The clip embedding's projection after pooling (same for every temporal head)."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())


class MeanPool(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = projection(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=1))


class AttentionPool(nn.Module):
    """Position embedding + multi-head attention pooling over frames."""

    def __init__(self, dim: int, frames: int, heads: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.heads = heads if dim % heads == 0 else 1
        self.pos = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.score = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, self.heads))
        self.proj = projection(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        h = x + self.pos[:, :t]
        weights = torch.softmax(self.score(h), dim=1)  # [N, T, heads]
        values = h.reshape(n, t, self.heads, d // self.heads)
        return self.proj((weights.unsqueeze(-1) * values).sum(dim=1).reshape(n, d))


class Attention(nn.Module):
    """Multi-head attention of ``q`` over ``kv`` (matmul + softmax: exports everywhere)."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads if dim % heads == 0 else 1
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        n, t, d = q.shape
        s, c = kv.shape[1], d // self.heads
        qh = self.q(q).reshape(n, t, self.heads, c).transpose(1, 2)
        kh = self.k(kv).reshape(n, s, self.heads, c).transpose(1, 2)
        vh = self.v(kv).reshape(n, s, self.heads, c).transpose(1, 2)
        attn = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(c), dim=-1)
        return self.out((attn @ vh).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: attention over the frames, then an MLP."""

    def __init__(self, dim: int, heads: int = 4, mlp: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(), nn.Linear(mlp * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h))
        return x + self.drop(self.mlp(self.norm2(x)))


class TemporalTransformer(nn.Module):
    """Frames projected to ``width``, position embeddings, ``layers`` blocks, attention pooling."""

    def __init__(self, dim: int, frames: int, width: int = 256, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        width = min(width, dim)
        self.proj = nn.Linear(dim, width) if width != dim else nn.Identity()
        self.pos = nn.Parameter(torch.randn(1, frames, width) * 0.02)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        self.pool = AttentionPool(width, frames, heads)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        h = self.blocks(h + self.pos[:, : h.shape[1]])
        return self.pool(self.norm(h))


def temporal_pool(kind: str, dim: int, frames: int) -> nn.Module:
    """The temporal head named ``kind`` (``mean``, ``attention`` or ``transformer``)."""
    if kind == "mean":
        return MeanPool(dim)
    if kind == "attention":
        return AttentionPool(dim, frames)
    if kind == "transformer":
        return TemporalTransformer(dim, frames)
    raise ValueError(f"temporal pooling must be one of {', '.join(POOLINGS)}, got '{kind}'")


class CrossTaskAttention(nn.Module):
    """Two task streams from the same frame tokens, each attending to the other, then pooled.

    Returns ``[N, 2 * width]``: task A's clip embedding followed by task B's.
    """

    def __init__(self, dim: int, frames: int, width: int = 256, heads: int = 4) -> None:
        super().__init__()
        width = min(width, dim)
        self.pos = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.proj_a, self.proj_b = nn.Linear(dim, width), nn.Linear(dim, width)
        self.norm_a, self.norm_b = nn.LayerNorm(width), nn.LayerNorm(width)
        self.a_from_b, self.b_from_a = Attention(width, heads), Attention(width, heads)
        self.pool_a, self.pool_b = AttentionPool(width, frames), AttentionPool(width, frames)
        self.width = width
        self.out_dim = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos[:, : x.shape[1]]
        a, b = self.norm_a(self.proj_a(x)), self.norm_b(self.proj_b(x))
        a, b = a + self.a_from_b(a, b), b + self.b_from_a(b, a)  # both directions from the same inputs
        return torch.cat([self.pool_a(a), self.pool_b(b)], dim=1)
