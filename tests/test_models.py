"""Models: CIFAR ResNets from torchvision, the small CNN, the fp32 classifier under bf16 autocast, and
torch.compile with batch shapes kept fixed."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ies import Config
from ies.data.datasets import ArrayDataset
from ies.models.layers import Float32Linear
from ies.models.zoo import FixedShapeCompiled, build_model, cifar_resnet, small_cnn
from ies.training.loop import train


@pytest.mark.parametrize("depth, count", [(18, 11_173_962), (34, 21_282_122)])
def test_cifar_resnet_is_the_usual_cifar_network(depth, count):
    net = cifar_resnet(depth, 10)
    # the parameter count of the authors' (kuangliu's) CIFAR ResNets: a 3x3 stem, 64 channels, fc 512 -> 10
    assert sum(p.numel() for p in net.parameters()) == count
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, Float32Linear)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet101", "densenet121"])
def test_imagenet_nets_are_torchvisions_with_the_same_initial_weights(name):
    torch.manual_seed(0)
    net = build_model(f"imagenet_{name}", (224, 224, 3), 1000)
    torch.manual_seed(0)
    ref = torchvision.models.get_model(name, weights=None, num_classes=1000)
    ours, theirs = net.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    head = net.fc if name.startswith("resnet") else net.classifier
    assert isinstance(head, Float32Linear)
    with pytest.raises(ValueError, match="takes 3-channel images"):
        build_model(f"imagenet_{name}", (224, 224, 1), 10)


def test_resnet18_keeps_32x32_resolution_in_the_first_stage():
    net = cifar_resnet(18, 10)
    shapes = {}
    for name in ("layer1", "layer4"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.update({name: tuple(o.shape)}))
    net(torch.randn(1, 3, 32, 32))
    assert shapes == {"layer1": (1, 64, 32, 32), "layer4": (1, 512, 4, 4)}


def test_classifier_and_logits_stay_fp32_under_bf16_autocast():
    net = small_cnn(10).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = net[:-1](x)
        logits = net(x)
    assert hidden.dtype == torch.bfloat16  # the body runs in bf16 ...
    assert logits.dtype == torch.float32  # ... the classifier in fp32
    torch.testing.assert_close(logits, F.linear(hidden.float(), net[-1].weight, net[-1].bias))


def test_build_model_picks_and_checks_the_kind_of_input():
    assert isinstance(build_model("auto", (32, 32, 3), 10).fc, Float32Linear)
    assert build_model("small_cnn", (16, 16, 1), 5)(torch.randn(2, 1, 16, 16)).shape == (2, 5)
    assert build_model("auto", (40,), 10)(torch.randn(2, 40)).shape == (2, 10)
    assert build_model("mlp", (8, 8, 3), 4)(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="does not take"):
        build_model("resnet18", (40,), 10)
    with pytest.raises(ValueError, match="does not take"):
        build_model("cnn1d", (32, 32, 3), 10)


def test_small_cnn_learns():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 16, 16)
    y = (x[:, 0].mean((1, 2)) > 0).long()  # a learnable rule
    net = small_cnn(2, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first


class CountingBackend:
    """A torch.compile backend that records the input shapes of every graph it compiles and runs it eagerly."""

    def __init__(self):
        self.shapes = []

    def __call__(self, gm, example_inputs):
        self.shapes.append(tuple(tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)))
        return gm.forward


def test_fixed_shape_compiled_compiles_only_the_given_batch_sizes():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), Float32Linear(8, 3))
    backend = CountingBackend()
    wrapped = FixedShapeCompiled(net, (8, 32), backend=backend)
    assert [n for n, _ in wrapped.named_parameters()] == [f"module.{n}" for n, _ in net.named_parameters()]
    for b in (8, 5, 8, 3, 8):  # a pass over 32 samples, then one over 11: remainders 5 and 3
        x = torch.randn(b, 6)
        torch.testing.assert_close(wrapped(x), net(x))
    batch_dims = {s[0] for shapes in backend.shapes for s in shapes if len(s) == 2 and s[1] == 6}
    assert batch_dims == {8}  # the remainders never reached the compiler
    compiled_train = len(backend.shapes)
    wrapped.eval()
    assert not net.training  # train()/eval() reach the module
    with torch.no_grad():
        wrapped(torch.randn(32, 6))
        wrapped(torch.randn(7, 6))
    assert len(backend.shapes) == compiled_train + 1
    torch._dynamo.reset()


def test_train_with_compile_gives_the_eager_results(monkeypatch):
    """Config.compile through ies.train: the same history as without it (an eager-running backend), and
    no graph for a remainder batch although the active set shrinks."""
    torch._dynamo.reset()
    backend = CountingBackend()
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **{**kw, "backend": backend}))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (70, 8, 8, 3), dtype=torch.uint8, generator=g)
    y = (x[..., 0].float().mean((1, 2)) > 127).long()
    data = ArrayDataset(x[:50], y[:50], x[50:], y[50:], 2, "tiny", (0.5,) * 3, (0.25,) * 3)
    cfg = Config(dataset="synthetic", model="small_cnn", epochs=8, batch_size=16, eval_batch_size=32, lr=0.05,
                 threshold=0.05, order=1, window=1, device="cpu", progress=False, checkpoint_every=0)

    def run(compile):
        torch.manual_seed(0)
        return train(cfg.replace(compile=compile), data, small_cnn(2, width=4)).history

    eager, compiled = run(False), run(True)
    assert eager["n_active"].min() < 50  # IES shrank the active set: remainder batches of many sizes
    cols = ["train_loss", "tracked_loss", "test_loss", "test_accuracy", "n_active", "n_mastered"]
    pd.testing.assert_frame_equal(eager[cols], compiled[cols], check_exact=False, rtol=1e-5)
    batch_dims = {s[0] for shapes in backend.shapes for s in shapes if s[1:] == (3, 8, 8)}  # the images
    assert batch_dims <= {16, 32} and batch_dims
    torch._dynamo.reset()
