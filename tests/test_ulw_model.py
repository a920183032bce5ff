"""ULW-SleepNet is the paper's network: counts pinned, shapes, the folded head, and it learns."""

import torch

from training.models.ulw_sleepnet import ULWSleepNet, count_macs, count_parameters


def test_counts_match_design():
    m = ULWSleepNet(4)
    assert count_parameters(m) == 13_337
    assert count_macs(m, (1, 4, 3000)) == 3_498_352  # conv + dense weights; ≈ 7.0 MFLOPs
    # the extractor is shared: one more channel adds only 32·64 head weights
    assert count_parameters(ULWSleepNet(5)) - count_parameters(m) == 32 * 64


def test_lengths_and_layer_settings():
    m = ULWSleepNet(4).eval()
    x = torch.randn(2 * 4, 1, 3000)
    lengths = []
    for block in m.extractor:
        x = block(x)
        lengths.append(x.shape[-1])
    assert lengths == [750, 188, 47] and x.shape[1] == 32
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)]
    assert len(bns) == 6 and all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)


def test_folded_head_is_exact():
    m = ULWSleepNet(4).eval()
    x = torch.randn(3, 4, 3000)
    with torch.no_grad():
        feats = m.extractor(x.reshape(12, 1, 3000)).mean(-1).reshape(3, 128)
        torch.testing.assert_close(m.folded_head()(feats), m(x), rtol=1e-5, atol=1e-5)


def test_it_learns_a_tiny_problem():
    """Smoke: class = which channel carries a 10 Hz tone. Judged on the training loss and on
    batch-statistics predictions: with Keras' BN momentum (0.01 here) running statistics need
    far more than a few steps, so eval mode is not the measure of a 30-step run."""
    torch.manual_seed(0)
    n = 24
    y = torch.arange(n) % 4
    x = 0.1 * torch.randn(n, 4, 3000)
    x[torch.arange(n), y] += torch.sin(2 * torch.pi * 10 * torch.arange(3000) / 100.0)
    m = ULWSleepNet(4, n_classes=4)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3, amsgrad=True)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    with torch.no_grad():
        assert (m(x).argmax(1) == y).float().mean() >= 0.9
