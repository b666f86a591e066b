import pytest
import torch

from ltlib.core.errors import ConfigError
from ltlib.models import NormedLinear, build_model, classifier_weight, count_parameters


@pytest.mark.parametrize("num_classes,expected", [(10, 464_154), (100, 470_004)])
def test_resnet32_parameter_count(num_classes, expected):
    assert count_parameters(build_model("resnet32", num_classes)) == expected


def test_resnet32_normed_head_count():
    assert count_parameters(build_model("resnet32", 100, classifier="normed")) == 469_904


def test_resnet34_wb_parameter_count():
    assert count_parameters(build_model("resnet34_wb", 100)) == 21_328_292


@pytest.mark.parametrize("name,expected", [("resnet50", 25_557_032), ("resnext50", 25_028_904)])
def test_imagenet_backbones_match_torchvision_parameter_counts(name, expected):
    # torchvision's documented counts at 1,000 classes: the split into features + classifier loses nothing
    assert count_parameters(build_model(name, 1000)) == expected


def test_one_channel_stem_drops_only_stem_weights():
    # 2 input channels fewer x 16 filters x 3 x 3
    assert count_parameters(build_model("resnet32", 10, in_channels=1)) == 464_154 - 2 * 16 * 9


@pytest.mark.parametrize("name,shape", [("resnet32", (2, 3, 32, 32)), ("resnet32", (2, 1, 28, 28)),
                                        ("resnet20", (2, 1, 28, 28)), ("resnet34_wb", (2, 1, 28, 28)),
                                        ("resnet50", (2, 3, 32, 32)), ("resnext50", (2, 1, 32, 32))])
def test_features_and_classifier_compose(name, shape):
    torch.manual_seed(0)
    model = build_model(name, 7, in_channels=shape[1]).eval()
    x = torch.randn(shape)
    feats = model.features(x)
    assert feats.shape == (2, model.num_features)
    assert torch.allclose(model(x), model.classifier(feats))
    assert classifier_weight(model.classifier).shape == (7, model.num_features)


def test_width_scales_channels():
    model = build_model("resnet32", 10, in_channels=1, width=0.5)
    assert model.num_features == 32 and model.conv1.out_channels == 8
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError, match="width"):
        build_model("resnet32", 10, width=0.3)


def test_option_a_shortcut_has_no_parameters():
    model = build_model("resnet32", 10)
    block = model.layer2[0]
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    out = block.shortcut(torch.ones(1, 16, 32, 32))
    assert out.shape == (1, 32, 16, 16) and out[:, :8].abs().sum() == 0 and out[:, 8:24].min() == 1


def test_normed_linear_gives_cosines():
    head = NormedLinear(8, 5)
    assert torch.allclose(head.weight.norm(dim=0), torch.ones(5), atol=1e-4)
    x = torch.randn(4, 8)
    out = head(x)
    assert out.abs().max() <= 1 + 1e-6
    assert torch.allclose(head(x * 10), out, atol=1e-6)  # scale-invariant in the features


def test_unknown_model_lists_valid():
    with pytest.raises(ConfigError, match="resnet32"):
        build_model("resnet18", 10)


def test_in_place_block_equals_the_reference_formulation():
    """relu_/add_ in BasicBlock are exact: same outputs and gradients, bit for bit, as LDAM-DRW's
    out-of-place relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    block = build_model("resnet32", 10).layer2[0]
    x = torch.randn(4, 16, 16, 16, requires_grad=True)

    def reference(x):
        out = F.relu(block.bn1(block.conv1(x)))
        return F.relu(block.bn2(block.conv2(out)) + block.shortcut(x))

    outputs, grads = [], []
    for forward in (reference, block):
        torch.manual_seed(1)
        out = forward(x)
        g = torch.autograd.grad(out.pow(2).sum(), [x, *block.parameters()])
        outputs.append(out.detach())
        grads.append(g)
    assert torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
