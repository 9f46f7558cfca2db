"""The fast dense layers compute exactly what the naive reference computes (plain torch.cat,
BN-ReLU-conv, NCHW): outputs, every gradient and the BN running statistics, in float64."""
import pytest
import torch

from densekit.models import DenseNet
from densekit.models.reference import reference_model


def tiny_densenet(bottleneck: bool, stem: str = "cifar") -> DenseNet:
    return DenseNet(growth_rate=4, block_config=(2, 3), num_init_features=8,
                    bn_size=2 if bottleneck else None, stem=stem, num_classes=5)


def run(model, x, train=True):
    model.train(train)
    x = x.clone().requires_grad_()
    out = model(x)
    # A weighted sum, so that every output element has its own gradient.
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out, x.grad


def assert_same(fast, ref, x, train=True):
    out_f, gx_f = run(fast, x, train)
    out_r, gx_r = run(ref, x.contiguous(), train)
    torch.testing.assert_close(out_f, out_r, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gx_f, gx_r, rtol=1e-9, atol=1e-9)
    ref_params = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-9, atol=1e-9, msg=name)
    ref_buffers = dict(ref.named_buffers())
    for name, b in fast.named_buffers():
        torch.testing.assert_close(b, ref_buffers[name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("bottleneck", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_training_step_matches_reference(bottleneck, channels_last, memory_efficient):
    torch.manual_seed(0)
    fast = tiny_densenet(bottleneck).double()
    ref = reference_model(fast).double()
    fast.memory_efficient = memory_efficient
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    if channels_last:  # the layout the matrix-product path of the 1x1 convolutions takes
        fast = fast.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    assert_same(fast, ref, x, train=True)
    # A second step sees the updated running statistics too; then eval mode uses them.
    assert_same(fast, ref, x, train=True)
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(x), ref.eval()(x.contiguous()), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("bottleneck", [True, False])
def test_eval_mode_gradients_match_reference(bottleneck):
    torch.manual_seed(1)
    fast = tiny_densenet(bottleneck, stem="imagenet").double().to(memory_format=torch.channels_last)
    ref = reference_model(fast).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert_same(fast, ref, x, train=False)


def test_reference_shares_the_state_dict_layout():
    fast = tiny_densenet(True)
    ref = reference_model(fast)
    assert list(fast.state_dict()) == list(ref.state_dict())
    assert "features.denseblock1.denselayer1.norm1.weight" in fast.state_dict()
    assert "features.transition1.conv.weight" in fast.state_dict()
    ref.load_state_dict(fast.state_dict())


def test_memory_efficient_switches_at_run_time_without_double_counting_bn():
    torch.manual_seed(2)
    fast = tiny_densenet(True)
    fast.memory_efficient = True
    x = torch.randn(4, 3, 16, 16)
    run(fast, x)
    # The recomputation in backward must not update the running averages a second time.
    layer = fast.features.denseblock1.denselayer1
    assert int(layer.norm1.num_batches_tracked) == 1
    fast.memory_efficient = False
    assert not any(getattr(m, "memory_efficient", False) for m in fast.modules() if m is not fast)


def test_bf16_autocast_channels_last_stays_close_to_float32_reference():
    torch.manual_seed(3)
    fast = tiny_densenet(True).to(memory_format=torch.channels_last)
    ref = reference_model(fast)
    x = torch.randn(8, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x.contiguous(memory_format=torch.channels_last)).float()
    expected = ref(x)
    assert (out - expected).norm() / expected.norm() < 5e-2


@pytest.mark.parametrize("channels_last", [False, True])
def test_memory_efficient_under_bf16_autocast_matches_the_plain_mode(channels_last):
    # Backward replays BN-ReLU under the forward's autocast state and casts conv1's gradients
    # back to the float32 parameters.
    torch.manual_seed(4)
    plain = tiny_densenet(True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    plain = plain.to(memory_format=fmt)
    efficient = tiny_densenet(True).to(memory_format=fmt)
    efficient.load_state_dict(plain.state_dict())
    efficient.memory_efficient = True
    x = torch.randn(8, 3, 16, 16).contiguous(memory_format=fmt)
    grads = []
    for model in (plain, efficient):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert grads[1][name].dtype == torch.float32
        assert (grads[1][name] - g).norm() <= 1e-2 * g.norm() + 1e-6, name
