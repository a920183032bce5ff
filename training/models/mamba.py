"""Unidirectional (causal) Mamba over ANNE features, one step per second (DESIGN §2.1).

pre-MLP (BatchNorm + Linear 140→100→100→100→10, LeakyReLU) → 3 residual Mamba layers (RMSNorm →
selective SSM; d_model 10, d_inner 20, d_state 16, d_conv 4, dt_rank 1) → RMSNorm → Linear to
3, 4 or 5 classes. ``forward`` runs a whole sequence; ``step`` advances every stream of a batch by
one second with its state carried over ([B, layers, d_inner, d_conv-1] convolution window and
[B, layers, d_inner, d_state] SSM state: 1,140 floats per stream) and shares the weights, so
stepping a night one second at a time equals the full-sequence forward.
``bidirectional=True`` is the paper's offline variant (a second, time-reversed stack; post-MLP
input 20), for comparison only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def sequential_scan(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """h_t = decay_t · h_{t-1} + drive_t from h_{-1} = 0, one step at a time: the reference,
    exactly what ``step()`` computes. decay, drive [B, L, ...] → h [B, L, ...]."""
    h, hs = torch.zeros_like(drive[:, 0]), []
    for t in range(drive.shape[1]):
        h = decay[:, t] * h + drive[:, t]
        hs.append(h)
    return torch.stack(hs, dim=1)


class _LinearScan(torch.autograd.Function):
    """h_t = decay_t · h_{t-1} + drive_t with a hand-written backward, itself a reverse linear
    recurrence: g_t = dL/dh_t + decay_{t+1} · g_{t+1}; dL/d drive_t = g_t, dL/d decay_t =
    g_t · h_{t-1}. Both loops run outside autograd on time-major contiguous slices (two fused
    element-wise calls per step), which is what makes 5,000-step crops cheap to train on a CPU:
    measured 0.3 s forward + backward for batch 4 × 5,000 s against 2.4 s for the autograd loop.
    """

    @staticmethod
    def forward(ctx, decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        a = decay.transpose(0, 1).contiguous()  # [L, B, ...]
        h = drive.transpose(0, 1).contiguous()
        for t in range(1, h.shape[0]):
            h[t].addcmul_(a[t], h[t - 1])
        ctx.save_for_backward(a, h)
        return h.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        a, h = ctx.saved_tensors
        g = grad_h.transpose(0, 1).contiguous()
        for t in range(g.shape[0] - 2, -1, -1):
            g[t].addcmul_(a[t + 1], g[t + 1])
        d_decay = torch.zeros_like(g)
        d_decay[1:] = g[1:] * h[:-1]
        return d_decay.transpose(0, 1), g.transpose(0, 1)


def fast_scan(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """The recurrence of ``sequential_scan`` for training (same values, fast backward)."""
    return _LinearScan.apply(decay, drive)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MambaLayer(nn.Module):
    """x + SSM(RMSNorm(x)) (mambapy's ResidualBlock with MambaBlock inside)."""

    def __init__(self, d_model=10, d_inner=20, d_state=16, d_conv=4, dt_rank=1) -> None:
        super().__init__()
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = d_inner, d_state, d_conv, dt_rank
        self.norm = RMSNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        with torch.no_grad():  # Mamba's dt initialisation: dt in [1e-3, 0.1], log-uniform
            dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1.0)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def _ssm_inputs(self, u: torch.Tensor):
        """u [..., d_inner] (after conv + SiLU) → delta [..., d_inner], B, C [..., d_state]."""
        dbc = self.x_proj(u)
        dt, b, c = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), b, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, d_model] → [B, L, d_model], causal, from a zero state."""
        seq = x.shape[1]
        xz = self.in_proj(self.norm(x))
        u, z = xz.chunk(2, dim=-1)
        u = F.pad(u.transpose(1, 2), (self.d_conv - 1, 0))
        u = F.silu(self.conv1d(u)[..., :seq].transpose(1, 2))
        delta, b, c = self._ssm_inputs(u)
        a = -torch.exp(self.A_log)  # [d_inner, d_state]
        decay = torch.exp(delta.unsqueeze(-1) * a)  # [B, L, d_inner, d_state]
        drive = (delta * u).unsqueeze(-1) * b.unsqueeze(-2)
        h = self.scan(decay, drive)  # [B, L, d_inner, d_state]
        y = (h * c.unsqueeze(-2)).sum(-1) + u * self.D
        return x + self.out_proj(y * F.silu(z))

    scan = staticmethod(fast_scan)

    def step(self, x: torch.Tensor, conv: torch.Tensor, h: torch.Tensor):
        """One step. x [B, d_model]; conv [B, d_inner, d_conv-1] (previous inputs, oldest
        first); h [B, d_inner, d_state] → (out [B, d_model], conv', h')."""
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)
        window = torch.cat([conv, u.unsqueeze(-1)], dim=-1)  # [B, d_inner, d_conv]
        u_c = F.silu((window * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)
        delta, b, c = self._ssm_inputs(u_c)
        a = -torch.exp(self.A_log)
        h = torch.exp(delta.unsqueeze(-1) * a) * h + (delta * u_c).unsqueeze(-1) * b.unsqueeze(-2)
        y = (h * c.unsqueeze(-2)).sum(-1) + u_c * self.D
        return x + self.out_proj(y * F.silu(z)), window[..., 1:], h


class MambaStager(nn.Module):
    def __init__(
        self,
        n_features: int = 140,
        n_classes: int = 5,
        d_model: int = 10,
        n_layers: int = 3,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.pre = nn.Sequential(
            nn.BatchNorm1d(n_features),
            nn.Linear(n_features, 100), nn.LeakyReLU(),
            nn.Linear(100, 100), nn.LeakyReLU(),
            nn.Linear(100, 100), nn.LeakyReLU(),
            nn.Linear(100, d_model),
        )  # fmt: skip
        self.layers = nn.ModuleList(MambaLayer(d_model) for _ in range(n_layers))
        self.backward_layers = (
            nn.ModuleList(MambaLayer(d_model) for _ in range(n_layers)) if bidirectional else None
        )
        width = 2 * d_model if bidirectional else d_model
        self.norm = RMSNorm(width)
        self.post = nn.Linear(width, n_classes)

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        """[..., 140] → [..., d_model]; BatchNorm over the feature axis (eval: fixed stats)."""
        shape = x.shape
        return self.pre(x.reshape(-1, shape[-1])).reshape(*shape[:-1], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, 140] → logits [B, L, n_classes]."""
        f = self._pre(x)
        out = f
        for layer in self.layers:
            out = layer(out)
        if self.backward_layers is not None:
            back = f.flip(1)
            for layer in self.backward_layers:
                back = layer(back)
            out = torch.cat([out, back.flip(1)], dim=-1)
        return self.post(self.norm(out))

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.layers[0]
        conv = torch.zeros(batch, len(self.layers), first.d_inner, first.d_conv - 1)
        return conv, torch.zeros(batch, len(self.layers), first.d_inner, first.d_state)

    def step(self, x: torch.Tensor, conv: torch.Tensor, h: torch.Tensor):
        """x [B, 140] one second per stream → (logits [B, n_classes], conv', h')."""
        if self.bidirectional:
            raise RuntimeError("the bidirectional variant has no causal step")
        out = self._pre(x)
        convs, hs = [], []
        for i, layer in enumerate(self.layers):
            out, c, s = layer.step(out, conv[:, i], h[:, i])
            convs.append(c)
            hs.append(s)
        return self.post(self.norm(out)), torch.stack(convs, 1), torch.stack(hs, 1)


def state_floats(model: MambaStager) -> int:
    conv, h = model.initial_state(1)
    return conv.numel() + h.numel()
