"""ULW-SleepNet (DESIGN §2.2; reference code wzw999/ULW-SLEEPNET, Keras), in torch.

One 30-s epoch [B, C, 3000] at 100 Hz, channel-major. One feature extractor is shared by all
channels ([B·C, 1, 3000]): three DSSC blocks of widths 8 → 16 → 32. A DSSC block's main stream
is twice (separable conv k3 'same' → BatchNorm → ReLU → MaxPool 2, ceil); its shortcut is two
separable convs with k1 and stride 2 (no BN, no activation); the two are added, then Dropout
0.1. Lengths 3000 → 750 → 188 → 47. Head: global average pool per channel → flatten (32·C) →
Dropout 0.3 → Dense 64 (linear) → Dense 5 (logits; softmax in the loss). At inference the two
linear layers fold into one (``folded_head``).

Counts for C = 4 (tests pin them): 13,337 trainable parameters; 3,498,352 multiply-adds counting
convolution and dense weights only (no BN, bias, pooling or addition), ≈ 7.0 MFLOPs at 2 per
MAC. The paper's 7.89 MFLOPs follows a convention we could not reproduce.
"""

from __future__ import annotations

import torch
from torch import nn

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # Keras defaults (momentum 0.99) in torch's convention
CLASSES = ("W", "N1", "N2", "N3", "REM")


class SeparableConv1d(nn.Sequential):
    """Keras SeparableConv1D: depthwise (no bias) then pointwise with bias."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv1d(cin, cin, k, stride=stride, padding=k // 2, groups=cin, bias=False),
            nn.Conv1d(cin, cout, 1, bias=True),
        )


class DSSCBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()

        def stage(a: int, b: int) -> list[nn.Module]:
            return [
                SeparableConv1d(a, b, 3),
                nn.BatchNorm1d(b, BN_EPS, BN_MOMENTUM),
                nn.ReLU(),
                nn.MaxPool1d(2, ceil_mode=True),
            ]

        self.main = nn.Sequential(*stage(cin, cout), *stage(cout, cout))
        self.shortcut = nn.Sequential(
            SeparableConv1d(cin, cout, 1, 2), SeparableConv1d(cout, cout, 1, 2)
        )
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.main(x) + self.shortcut(x))


class ULWSleepNet(nn.Module):
    def __init__(self, n_channels: int = 4, n_classes: int = 5, widths=(8, 16, 32)) -> None:
        super().__init__()
        self.n_channels = n_channels
        # fixed per-channel input scale (1 / training-set std), part of the exported graph so
        # the runtime feeds physical units; not trainable, not counted in the parameters
        self.register_buffer("input_scale", torch.ones(n_channels))
        blocks, cin = [], 1
        for w in widths:
            blocks.append(DSSCBlock(cin, w))
            cin = w
        self.extractor = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(cin * n_channels, 64), nn.Linear(64, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, 3000] → logits [B, n_classes]."""
        b, c, t = x.shape
        x = x * self.input_scale[None, :, None]
        f = self.extractor(x.reshape(b * c, 1, t))  # shared per-channel extractor
        f = f.mean(dim=-1).reshape(b, c * f.shape[1])  # global average pool, channel-major
        return self.head(f)

    @classmethod
    def from_checkpoint(cls, path) -> ULWSleepNet:
        """A model in eval mode with the weights of a training checkpoint (``{"model": …}``)."""
        model = cls(4)
        model.load_state_dict(torch.load(path, weights_only=True)["model"])
        return model.eval()

    def predict(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Stage indices for [N, C, T] epochs, in batches, eval mode, no gradients."""
        self.eval()
        with torch.no_grad():
            parts = [self(x[i : i + batch].float()).argmax(1) for i in range(0, len(x), batch)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def folded_head(self) -> nn.Linear:
        """Dense 64 → Dense 5 as one linear layer (exact: there is no activation between)."""
        d1, d2 = self.head[2], self.head[3]
        fused = nn.Linear(d1.in_features, d2.out_features)
        with torch.no_grad():
            fused.weight.copy_(d2.weight @ d1.weight)
            fused.bias.copy_(d2.weight @ d1.bias + d2.bias)
        return fused


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of convolution and linear weights for one forward pass of ``input_shape``
    (batch included), measured with forward hooks on the real output lengths."""
    total = 0

    def conv_hook(m: nn.Conv1d, _inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0]

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(input_shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
