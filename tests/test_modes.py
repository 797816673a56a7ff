"""ies.models.modes: eval mode for a block, each module's own flag restored; strict fp32 is a no-op off CUDA."""

import pytest
import torch
from torch import nn

from ies.models.modes import evaluating, plain_eval, strict_fp32


def mixed_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a training model
    return net


def test_evaluating_restores_each_modules_flag_also_on_error():
    net = mixed_net()
    before = [m.training for m in net.modules()]
    assert before == [True, True, False, True, True]
    with evaluating(net) as inside:
        assert inside is net and not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before  # not net.train(True), which would unfreeze the BN
    with pytest.raises(RuntimeError, match="boom"), evaluating(net):
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before


def test_plain_eval_turns_off_autocast_and_gives_the_device():
    net = mixed_net()
    with torch.autocast("cpu", dtype=torch.bfloat16), plain_eval(net) as device:
        assert device == torch.device("cpu") and not net.training
        assert net(torch.randn(5, 3)).dtype == torch.float32  # autocast would give bfloat16
    assert net.training and not net[1].training
    with strict_fp32(torch.device("cpu")):  # nothing to switch off on a CPU
        pass
