"""The causal Mamba step rewritten for inference graphs: the same function, fewer graph ops.

A one-stream step is ~160 tiny ops, so its latency is the runtimes' per-op dispatch more than
arithmetic (measured: LiteRT/XNNPACK ~70 ns per element-wise op, ~1.2 µs per 100×100 layer;
onnxruntime ~0.75 µs per node). ``LeanStep`` folds what training keeps separate and exports
without the ops that break the graph:

- the pre-MLP's BatchNorm into its first linear layer, every RMSNorm weight into the linear
  layer after it (exact algebra on the trained weights);
- ``x_proj`` and ``dt_proj`` as one linear layer (``dt_proj.W @ x_proj.W[:dt_rank]`` is a
  20×20 matrix beside B's and C's rows), so dt costs no extra layer;
- softplus as ``log(1 + exp(x))``, without the ``x > 20`` select of torch's softplus, which
  LiteRT's XNNPACK delegate cannot run (it split the graph into four partitions). The select is
  never taken: ``softplus_bound`` proves from the weights that |x| stays far below exp's
  overflow whatever the input (every Mamba layer starts with an RMSNorm, which bounds what
  reaches dt), and the export refuses weights for which it cannot. (For x < -17, where
  softplus(x) < 4e-8, it gives 0; the carried-step parity checks cover it.)

Inputs, outputs and state layout are ``MambaStager.step``'s, so every runtime and manifest stays
as it was; ``tests/test_mamba_model.py`` checks the two steps agree.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.mamba import MambaLayer, MambaStager

EXP_SAFE = 80.0  # exp(80) ≈ 5.5e34: 1 + exp(x) is finite in float32 below this


def _linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _rms_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x), the RMSNorm without its weight (folded into the next linear layer)."""
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)


class _LeanLayer(nn.Module):
    def __init__(self, layer: MambaLayer) -> None:
        super().__init__()
        w = layer.norm.weight.detach()
        di, r = layer.d_inner, layer.dt_rank
        inp = layer.in_proj.weight.detach() * w  # RMSNorm weight folded
        xp = layer.x_proj.weight.detach()
        self.eps = layer.norm.eps
        self.di, self.ds = di, layer.d_state
        self.uz = _linear(inp)
        self.conv_w = nn.Parameter(layer.conv1d.weight.detach()[:, 0].clone())  # [di, d_conv]
        self.conv_b = nn.Parameter(layer.conv1d.bias.detach().clone())
        w_dt = layer.dt_proj.weight.detach() @ xp[:r]  # [d_inner, d_inner], rank dt_rank
        zeros = torch.zeros(2 * layer.d_state)
        self.dbc = _linear(
            torch.cat([w_dt, xp[r:]]), torch.cat([layer.dt_proj.bias.detach(), zeros])
        )
        self.register_buffer("a", -torch.exp(layer.A_log.detach()))
        self.register_buffer("d", layer.D.detach().clone())
        self.out = _linear(layer.out_proj.weight.detach())

    def forward(self, x: torch.Tensor, conv: torch.Tensor, h: torch.Tensor):
        """x [B, d_model]; conv [B, d_inner, d_conv-1]; h [B, d_inner, d_state]."""
        n = _rms_scale(x, self.eps)
        u, z = self.uz(n).split([self.di, self.di], dim=-1)
        window = torch.cat([conv, u.unsqueeze(-1)], dim=-1)
        v = (window * self.conv_w).sum(-1) + self.conv_b
        uc = v * torch.sigmoid(v)
        dt, b, c = self.dbc(uc).split([self.di, self.ds, self.ds], dim=-1)
        delta = torch.log(1.0 + torch.exp(dt))  # softplus; see softplus_bound
        h = torch.exp(delta.unsqueeze(-1) * self.a) * h + (delta * uc).unsqueeze(-1) * b.unsqueeze(
            -2
        )
        y = (h * c.unsqueeze(-2)).sum(-1) + uc * self.d
        return x + self.out(y * (z * torch.sigmoid(z))), window[..., 1:], h

    def sequence(self, x: torch.Tensor, conv: torch.Tensor, h: torch.Tensor):
        """One stream, T seconds: x [T, d_model]; conv [d_inner, d_conv-1]; h [d_inner,
        d_state] → (x', window [d_conv-1+T, d_inner], states [T, d_inner, d_state]). All but
        the recurrence runs over the T seconds at once; the recurrence is unrolled."""
        steps = x.shape[0]
        n = _rms_scale(x, self.eps)
        u, z = self.uz(n).split([self.di, self.di], dim=-1)
        window = torch.cat([conv.transpose(0, 1), u], dim=0)  # oldest first
        v = self.conv_b + window[:steps] * self.conv_w[:, 0]
        for k in range(1, self.conv_w.shape[1]):
            v = v + window[k : k + steps] * self.conv_w[:, k]
        uc = v * torch.sigmoid(v)
        dt, b, c = self.dbc(uc).split([self.di, self.ds, self.ds], dim=-1)
        delta = torch.log(1.0 + torch.exp(dt))
        decay = torch.exp(delta.unsqueeze(-1) * self.a)
        inputs = (delta * uc).unsqueeze(-1) * b.unsqueeze(-2)
        states = []
        for t in range(steps):
            h = decay[t] * h + inputs[t]
            states.append(h)
        hs = torch.stack(states)
        y = (hs * c.unsqueeze(-2)).sum(-1) + uc * self.d
        return x + self.out(y * (z * torch.sigmoid(z))), window, hs


class LeanStep(nn.Module):
    """``MambaStager.step`` of a trained causal model as a lean graph: forward(features [B, 140]
    normalised, conv, h) → (logits, conv', h')."""

    def __init__(self, model: MambaStager) -> None:
        super().__init__()
        if model.bidirectional:
            raise RuntimeError("the bidirectional variant has no causal step")
        bound = softplus_bound(model)
        if bound >= EXP_SAFE:
            raise ValueError(f"dt pre-activations may reach {bound:.1f}: softplus needs a clamp")
        bn, first = model.pre[0], model.pre[1]
        scale = bn.weight.detach() * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() - bn.running_mean * scale
        w1 = first.weight.detach()
        self.pre = nn.Sequential(  # index 0 left empty: layer names stay MambaStager's
            nn.Identity(),
            _linear(w1 * scale, w1 @ shift + first.bias.detach()),
            *list(model.pre)[2:],
        )
        self.layers = nn.ModuleList(_LeanLayer(layer) for layer in model.layers)
        self.eps = model.norm.eps
        self.head = _linear(
            model.post.weight.detach() * model.norm.weight.detach(), model.post.bias.detach()
        )

    def forward(self, features: torch.Tensor, conv: torch.Tensor, h: torch.Tensor):
        out = self.pre(features)
        convs, hs = [], []
        for layer, c, s in zip(self.layers, conv.split(1, dim=1), h.split(1, dim=1), strict=True):
            out, c, s = layer(out, c.squeeze(1), s.squeeze(1))
            convs.append(c.unsqueeze(1))
            hs.append(s.unsqueeze(1))
        return self.head(_rms_scale(out, self.eps)), torch.cat(convs, 1), torch.cat(hs, 1)


class LeanSequence(LeanStep):
    """T consecutive seconds of one stream in one call (a replay): forward(features [T, 140]
    normalised, conv [1, ...], h [1, ...]) → (logits [T, classes], windows [layers, d_conv-1+T,
    d_inner], states [T, layers, d_inner, d_state]). After second m the state is conv =
    windows[:, m : m+d_conv-1] transposed and h = states[m-1], so a call with fewer than T real
    seconds (zero-padded) still gives the exact state after its last real one."""

    def forward(self, features: torch.Tensor, conv: torch.Tensor, h: torch.Tensor):
        out = self.pre(features)
        windows, states = [], []
        for i, layer in enumerate(self.layers):
            out, w, s = layer.sequence(out, conv[0, i], h[0, i])
            windows.append(w)
            states.append(s)
        logits = self.head(_rms_scale(out, self.eps))
        return logits, torch.stack(windows), torch.stack(states, dim=1)


def softplus_bound(model: MambaStager) -> float:
    """An upper bound on |dt pre-activation| over every input and state, from the weights.

    Each layer's input is RMS-normalised, so ||x / rms(x)||₂ ≤ √d_model whatever the features;
    hence |u_j| ≤ √d_model · ||(W_in ⊙ w_norm)_j||₂ for every u that enters the convolution
    window (the zero initial window too), |conv_j| ≤ Σ_k |w_jk| · U_j + |b_j|, |SiLU(v)| ≤
    max(|v|, 0.279), and |dt_d| ≤ Σ_j |(W_dt W_x)_dj| · U'_j + |b_d|.
    """
    worst = 0.0
    for layer in model.layers:
        di, r = layer.d_inner, layer.dt_rank
        dm = layer.in_proj.in_features
        w_u = layer.in_proj.weight.detach()[:di] * layer.norm.weight.detach()
        u_max = dm**0.5 * w_u.norm(dim=1)
        cw, cb = layer.conv1d.weight.detach()[:, 0], layer.conv1d.bias.detach()
        v_max = cw.abs().sum(-1) * u_max + cb.abs()
        uc_max = torch.clamp(v_max, min=0.279)
        w_dt = layer.dt_proj.weight.detach() @ layer.x_proj.weight.detach()[:r]
        dt_max = w_dt.abs() @ uc_max + layer.dt_proj.bias.detach().abs()
        worst = max(worst, float(dt_max.max()))
    return worst
