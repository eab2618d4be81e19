"""Models: timm by name, WideResNet, and the built-ins, for any channels, size and class count."""

from __future__ import annotations

import pytest
import torch

from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec


def build(pm, spec: str, classes: int, shape, **params):
    from cobench.grid.spec import split_spec

    name, arg = split_spec(spec)
    cls = pm.registry.get("models", name)
    if arg is not None:
        params[cls.spec_arg] = arg
    return cls(**params).build(num_classes=classes, image_shape=shape)


@pytest.mark.parametrize(
    "spec, params",
    [
        ("timm:test_resnet", {}),
        ("wrn-28-10", {"depth": 10, "width": 1}),
        ("small-cnn", {"width": 4}),
        ("preact-resnet18", {"width": 4}),
    ],
)
@pytest.mark.parametrize("shape, classes", [((1, 16, 16), 3), ((3, 16, 16), 10), ((3, 20, 12), 17)])
def test_models_give_k_logits_for_1_and_3_channel_inputs(pm, spec, params, shape, classes):
    net = build(pm, spec, classes, shape, **params)
    net.eval()
    out = net(torch.rand(2, *shape))
    assert out.shape == (2, classes)
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == shape[0]


def test_timm_models_with_a_fixed_input_size_get_the_datasets(pm):
    net = build(pm, "timm:test_vit", 5, (1, 16, 16))
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 5)


def test_timm_is_never_pretrained_and_is_seeded(pm):
    torch.manual_seed(0)
    a = build(pm, "timm:test_resnet", 4, (3, 16, 16))
    torch.manual_seed(0)
    b = build(pm, "timm:test_resnet", 4, (3, 16, 16))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_timm_errors_are_clear(pm):
    with pytest.raises(ConfigError, match=r"unknown timm model 'resnet_18'; did you mean .*resnet18"):
        build(pm, "timm:resnet_18", 10, (3, 32, 32))
    with pytest.raises(ConfigError, match="needs an argument: write timm:MODEL_NAME"):
        resolve(GridSpec(models=["timm"]), pm.registry)


def test_wide_resnet_has_the_standard_size_and_rejects_bad_depths(pm):
    net = build(pm, "wrn-28-10", 10, (3, 32, 32))
    assert 36.4e6 < sum(p.numel() for p in net.parameters()) < 36.6e6  # WRN-28-10: 36.5M parameters
    small = build(pm, "wrn-28-10", 10, (3, 32, 32), depth=10, width=1)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in small.modules())
    assert n_convs == 1 + 2 * 3  # stem + one 2-conv block per group for depth 10
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        pm.registry.get("models", "wrn-28-10")(depth=12)


def test_timm_model_trains_one_epoch_through_the_runner(pm):
    from cobench.run.cell_worker import execute_cell

    spec = GridSpec(models=["timm:test_resnet"], methods=["fgsm"], eps=[8], evaluators=["clean"])
    spec.override(epochs=1, batch_size=64, probe_size=8)
    spec.set_param("datasets.digits.test_fraction=0.9")
    (cell,) = resolve(spec, pm.registry)
    assert cell.model.config() == {"name": "timm", "params": {"model_name": "test_resnet", "drop_rate": 0.0}}
    result = execute_cell(cell.config(), {"device": "cpu"})
    assert result["status"] == "ok", result.get("error")
    assert result["plugins"]["models"] == "cobench.models.timm_models"


class ReferencePreActBlock(torch.nn.Module):
    """PreActBlock written as locuslab/fast_adversarial CIFAR10/preact_resnet.py (and co_features) write it."""

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        nn, F = torch.nn, torch.nn.functional
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)
            )
        self.relu = F.relu

    def forward(self, x):
        out = self.relu(self.bn1(x))
        shortcut = self.shortcut(x) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out += shortcut
        return out


@pytest.mark.parametrize("in_planes, planes, stride", [(4, 8, 2), (4, 4, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_preact_block_matches_the_reference_block(in_planes, planes, stride, training):
    from cobench.models.preact_resnet import PreActBlock

    torch.manual_seed(0)
    ours = PreActBlock(in_planes, planes, stride)
    for m in ours.modules():  # non-trivial BatchNorm affine and running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    reference = ReferencePreActBlock(in_planes, planes, stride)
    reference.load_state_dict(ours.state_dict())  # same parameter names and shapes
    ours.train(training)
    reference.train(training)
    x = torch.randn(3, in_planes, 8, 8)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)
