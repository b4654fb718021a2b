"""recompute_bn_stats: eval-mode BatchNorm statistics from real batches, everything else as it was."""

import torch
from torch import nn

from edgekit.train.batchnorm import recompute_bn_stats


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.LazyLinear(2))


def test_statistics_are_those_eval_mode_sees():
    net = _net()
    x = torch.randn(64, 3, 8, 8) * 3 + 5
    net(x[:2])  # materialize the lazy layer
    bn = net[2]
    bn.running_mean.fill_(1e4)  # stale statistics, as after a few steps from scratch
    bn.momentum = 0.1
    net.train()
    assert recompute_bn_stats(net, ({"image": x[i:i + 16]} for i in range(0, 64, 16))) == 64
    with torch.no_grad():
        feats = net[0](x)  # dropout off: the statistics describe the eval-mode network
    torch.testing.assert_close(bn.running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-4)
    batch_vars = torch.stack([feats[i:i + 16].var((0, 2, 3), unbiased=True) for i in range(0, 64, 16)])
    torch.testing.assert_close(bn.running_var, batch_vars.mean(0), rtol=1e-4, atol=1e-4)
    assert net.training and all(m.training for m in net.modules())  # modes and momentum restored
    assert bn.momentum == 0.1


def test_image_cap_single_images_and_nothing_to_do():
    net = _net().eval()
    x = torch.randn(40, 3, 8, 8)
    net(x[:2])
    assert recompute_bn_stats(net, [x[:16], x[16:32], x[32:]], max_images=20) == 20
    assert not any(m.training for m in net.modules())
    before = net[2].running_mean.clone()
    assert recompute_bn_stats(net, [x[:1]]) == 0  # one image has no variance: statistics kept
    assert torch.equal(net[2].running_mean, before)
    assert recompute_bn_stats(nn.Linear(3, 2), iter(())) == 0  # no BatchNorm: batches not even read
