"""Models: torchvision ResNets adapted to 32x32 images, torchvision's ImageNet networks as published (for
224x224 inputs), and small nets that train fast on a CPU."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from .layers import Float32Linear
from .transformer import PatchTransformer1d, TinyViT


def mlp(in_features: int, num_classes: int, hidden: int = 256) -> nn.Module:
    """Two hidden ReLU layers: ``(B, in_features)`` -> ``(B, num_classes)``."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        Float32Linear(hidden, num_classes),
    )


def cnn1d(length: int, num_classes: int, channels: int = 32) -> nn.Module:
    """The MNIST-1D convnet of Greydanus (2020), with BatchNorm: ``(B, length)`` -> ``(B, num_classes)``."""
    return nn.Sequential(
        nn.Unflatten(1, (1, length)),
        nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.BatchNorm1d(channels), nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.BatchNorm1d(channels), nn.ReLU(),
        nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.BatchNorm1d(channels), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        Float32Linear(channels, num_classes),
    )


def small_cnn(num_classes: int, in_channels: int = 3, width: int = 32) -> nn.Module:
    """A 4-conv BatchNorm net for 32x32 images that trains in minutes on a CPU:
    ``(B, C, 32, 32)`` -> ``(B, num_classes)``."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        block(in_channels, width), nn.MaxPool2d(2),
        block(width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 4 * width), nn.MaxPool2d(2),
        block(4 * width, 4 * width), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        Float32Linear(4 * width, num_classes),
    )


def cifar_resnet(depth: int, num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18/34 adapted to 32x32 inputs as in the authors' code (the usual CIFAR
    ResNet): a 3x3 stride-1 stem, no max-pool, and an fp32 classifier. The same layers and parameter
    count as the authors' network (11,173,962 for ResNet-18 with 10 classes, 21,282,122 for ResNet-34);
    every convolution initialised as torchvision does (Kaiming normal, fan-out)."""
    builder = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34}[depth]
    net = builder(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    fc = Float32Linear(net.fc.in_features, num_classes)
    net.fc = fc
    return net


IMAGENET_NETS = ("resnet18", "resnet34", "resnet50", "resnet101", "densenet121")
"""torchvision architectures registered as ``imagenet_<name>`` (the paper's Table 2 uses DenseNet-121,
ResNet-34 and ResNet-101 on ImageNet-1k)."""


def imagenet_net(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision's ``name`` (one of :data:`IMAGENET_NETS`) exactly as built for ImageNet (7x7 stride-2
    stem and max-pool, for 224x224 inputs), without pretrained weights, its classifier run in fp32 (the
    same initial weights: they are copied into the :class:`Float32Linear`)."""
    if in_channels != 3:
        raise ValueError(f"model 'imagenet_{name}' takes 3-channel images, got {in_channels} channels")
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    head = "fc" if hasattr(net, "fc") else "classifier"
    old = getattr(net, head)
    fc = Float32Linear(old.in_features, num_classes)
    fc.load_state_dict(old.state_dict())
    setattr(net, head, fc)
    return net


class FixedShapeCompiled(nn.Module):
    """``module`` compiled for batches of the sizes in ``batch_sizes``, run eagerly for any other size.

    A training pass over a shrinking active set ends each epoch with a batch of a new size; compiled
    with shapes kept fixed (``dynamic=False``), that batch would trigger a recompilation every epoch
    (and, after a few, a slower dynamic-shape graph). Here the full batches run the compiled graph and
    the one remainder batch per pass runs the same module eagerly: the same weights, the same result,
    no recompilation. ``train()``/``eval()`` and the parameters are those of ``module``; save
    ``module``'s ``state_dict``.

    Args:
        module: the model.
        batch_sizes: the batch sizes to compile for (the training and the no-grad batch sizes).
        **compile_kwargs: passed to ``torch.compile`` (``mode``, ``backend``, ...).
    """

    def __init__(self, module: nn.Module, batch_sizes, **compile_kwargs) -> None:
        super().__init__()
        self.module = module
        self.batch_sizes = frozenset(int(b) for b in batch_sizes)
        # kept out of the submodules: it wraps ``module`` itself, whose parameters are registered once
        self.__dict__["compiled"] = torch.compile(module, dynamic=False, **compile_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] in self.batch_sizes:
            return self.compiled(x)
        return self.module(x)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``build(sample_shape, num_classes)`` and the inputs it takes
    (``"signal"``: ``(L,)``, ``"image"``: ``(H, W, C)``, ``"any"``)."""

    build: Callable[[tuple[int, ...], int], nn.Module]
    inputs: str


MODELS: dict[str, ModelSpec] = {
    "auto": ModelSpec(lambda shape, k: build_model("resnet18" if len(shape) == 3 else "cnn1d", shape, k), "any"),
    "mlp": ModelSpec(lambda shape, k: mlp(math.prod(shape), k), "any"),
    "cnn1d": ModelSpec(lambda shape, k: cnn1d(shape[0], k), "signal"),
    "small_cnn": ModelSpec(lambda shape, k: small_cnn(k, shape[-1]), "image"),
    "resnet18": ModelSpec(lambda shape, k: cifar_resnet(18, k, shape[-1]), "image"),
    "resnet34": ModelSpec(lambda shape, k: cifar_resnet(34, k, shape[-1]), "image"),
    "transformer": ModelSpec(lambda shape, k: transformer(shape, k), "any"),
    **{f"imagenet_{n}": ModelSpec(lambda shape, k, n=n: imagenet_net(n, k, shape[-1]), "image") for n in IMAGENET_NETS},
}
"""The registry of models by name (``Config.model``); add a model here, in one place."""


def transformer(sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The small transformers of :mod:`ies.models.transformer` at their default sizes:
    ``PatchTransformer1d(length, num_classes)`` for ``(L,)`` signals (about 70 k parameters),
    ``TinyViT(num_classes, in_channels, size)`` for square ``(H, W, C)`` images (about 140 k)."""

    if len(sample_shape) == 1:
        return PatchTransformer1d(sample_shape[0], num_classes)
    h, w, c = sample_shape
    if h != w:
        raise ValueError(f"model 'transformer' takes square images, got {h}x{w}")
    return TinyViT(num_classes, c, h)


def build_model(name: str, sample_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build model ``name`` (a key of :data:`MODELS`) for inputs of ``sample_shape`` (``(L,)`` signals or
    ``(H, W, C)`` images). ``auto`` picks ``cnn1d`` for signals and ``resnet18`` for images."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: use one of {sorted(MODELS)}")
    spec = MODELS[name]
    kind = "image" if len(sample_shape) == 3 else "signal"
    if spec.inputs not in ("any", kind):
        raise ValueError(f"model {name!r} does not take {'images' if kind == 'image' else '1-D signals'} "
                         f"of shape {sample_shape}")
    return spec.build(tuple(sample_shape), num_classes)
