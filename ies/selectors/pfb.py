"""Partial Forward Blocking (Wu, Guo, Zuo, Sang, Gao, "Partial Forward Blocking: A Novel Data Pruning Paradigm
for Lossless Training Acceleration", ICCV 2025, arXiv 2506.23674).

What the paper's abstract states and this selector follows: a sample's importance is read from the
features of the target model's *shallow layers*; the less important samples are pruned there, and only
the retained ones go on through the rest of the forward pass and the backward pass; the importance is a
*probability density* (rare samples matter), from an adaptive estimate of the feature distribution
that follows the training; on ImageNet 40 % of the data is pruned (``pfb_prune_ratio`` 0.4).

Our choices, where we could not read the paper's details: the first stage is the stem and first
residual stage of a ResNet (``conv1 .. layer1``), or the first convolution block (and its pooling) of a
sequential CNN (``cnn1d``, ``small_cnn``), :func:`first_stage`; its output is average-pooled per channel;
the density is a mixture of Gaussians at ``pfb_centres`` running centres
(:class:`~ies.selectors.rules_pruning.Centres`, momentum :data:`MOMENTUM`); in each training batch the
``floor(pfb_prune_ratio x B)`` densest samples are blocked
(:func:`~ies.selectors.rules_pruning.block_dense`); until the centres are filled no sample is blocked;
the last ``anneal_fraction`` of the epochs trains every sample without the first-stage pass.

Accounting: the loop runs the first stage without grad (eval mode) on every sample of a batch, then
forwards the continuing samples through the whole model with grad (the first stage again: our loop does
not carry activations across) and back-propagates them. A sample counts ``fraction`` of a forward for
the first stage, ``fraction`` measured with ``torch.utils.flop_counter.FlopCounterMode`` on the model as
built (convolutions and matrix products; 0.0615 for ``cnn1d`` on MNIST-1D), plus one forward and one
backward if it continues: ``compute_saving = 1 - (fraction + 3 k) / 3`` for a continuing share ``k``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import Plan, Selector, register
from .rules_pruning import Centres, block_dense, density, pooled

MOMENTUM = 0.1
"""How far a centre and its weight move towards each batch's estimate (:class:`Centres`). Our choice."""
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


def first_stage(model: nn.Module) -> nn.Module | None:
    """The first stage of ``model`` as a module sharing its layers, or ``None`` if it has none to stop after.

    A torchvision-style ResNet (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``): the stem and
    ``layer1``. An ``nn.Sequential``: its children up to the first that is or holds a ReLU, with the
    pooling layer right after it; only if that prefix holds a convolution and is not the whole model."""
    if all(hasattr(model, a) for a in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")):
        return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1)
    if not isinstance(model, nn.Sequential):
        return None
    children = list(model)
    end = next((i for i, c in enumerate(children) if any(isinstance(m, nn.ReLU) for m in c.modules())), None)
    if end is None:
        return None
    end += 1 if end + 1 < len(children) and isinstance(children[end + 1], POOLS) else 0
    prefix = children[:end + 1]
    has_conv = any(isinstance(m, nn.Conv1d | nn.Conv2d) for c in prefix for m in c.modules())
    return nn.Sequential(*prefix) if has_conv and end + 1 < len(children) else None


def flop_fraction(model: nn.Module, stage: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of ``stage(x)`` over those of ``model(x)`` (``FlopCounterMode``, no grad, eval mode; the
    model's mode is restored), for an input batch ``x`` (one sample is enough)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            with FlopCounterMode(display=False) as part:
                stage(x)
            with FlopCounterMode(display=False) as whole:
                model(x)
    finally:
        model.train(was)
    return part.get_total_flops() / max(whole.get_total_flops(), 1)


class FirstStage:
    """The :attr:`Plan.stage` of PFB: ``features(x)`` runs the first stage on ``x`` ``(B, ...)`` and returns
    its ``(B, C)`` pooled output; ``fraction`` is measured on the first batch it sees."""

    def __init__(self, model: nn.Module, stage: nn.Module) -> None:
        self.model, self.stage = model, stage
        self.fraction: float | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.fraction is None:
            self.fraction = flop_fraction(self.model, self.stage, x[:1])
        return pooled(self.stage(x))


@register
class PFB(Selector):
    """Every sample runs the first stage; the densest ``pfb_prune_ratio`` of each batch stop there."""

    name = "pfb"

    def __init__(self, cfg, num_samples, device, generator) -> None:
        super().__init__(cfg, num_samples, device, generator)
        self.centres = Centres(cfg.pfb_centres, MOMENTUM, device)
        self.everyone = torch.arange(num_samples, device=device)
        self.stage: FirstStage | None = None
        self.blocked = torch.zeros((), dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.seen = torch.zeros((), dtype=torch.long, device=device)

    def attach_model(self, model: nn.Module) -> None:
        stage = first_stage(model)
        if stage is None:
            raise ValueError(f"selector 'pfb' needs a model with a first stage to stop after (resnet18/34, "
                             f"small_cnn, cnn1d), not {self.cfg.model!r} ({type(model).__name__})")
        self.stage = FirstStage(model, stage)

    def plan(self, epoch: int, lr: float) -> Plan:
        if self.stage is None:
            raise RuntimeError("pfb: attach_model(model) must run before the first plan")
        self.blocked = torch.zeros_like(self.blocked)
        self.loss_sum, self.seen = torch.zeros_like(self.loss_sum), torch.zeros_like(self.seen)
        annealing = self.annealing(epoch)
        return Plan(train=self.everyone, track=self.everyone[:0], filter=not annealing,
                    stage=None if annealing else self.stage)

    def keep(self, idx: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the samples of the batch that continue past the first stage (``features`` ``(B, C)``)."""
        if self.centres.full:
            mask = block_dense(density(features, self.centres.centres, self.centres.weights), self.cfg.pfb_prune_ratio)
        else:
            mask = torch.ones(idx.shape[0], dtype=torch.bool, device=idx.device)
        self.centres.update(features)
        self.blocked += (~mask).sum()
        return mask

    def observe(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        self.loss_sum += losses.detach().sum()
        self.seen += losses.numel()

    def stats(self) -> dict[str, torch.Tensor]:
        """``n_mastered``: samples blocked after the first stage this epoch; ``tracked_loss``: mean training
        loss of the samples that continued."""
        zero = torch.zeros((), device=self.device)
        return {"tracked_loss": self.loss_sum / self.seen.clamp(min=1), "n_mastered": self.blocked,
                "n_newly_mastered": zero, "n_reentered": zero, "n_nonfinite": zero}

    def state_dict(self) -> dict:
        return {"centres": self.centres.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.centres.load_state_dict(state["centres"])
