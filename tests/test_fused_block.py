"""The shared-statistics dense block (models/fused_block.py) computes what the naive reference
computes, in float64: outputs, the input's and every parameter's gradient, and every BatchNorm's
running averages, over two training steps; and it is the route a training step takes."""
import pytest
import torch
from torch import nn

from densekit.models import DenseBlock, DenseNet
from densekit.models import fused_block
from densekit.models.reference import reference_model

from test_fast_layers import assert_same


def tiny(bottleneck=True, **kw):
    torch.manual_seed(0)
    return DenseNet(growth_rate=4, block_config=(3, 2), num_init_features=6,
                    bn_size=2 if bottleneck else None, stem="cifar", num_classes=5, **kw).double()


def blocks(model):
    return [m for m in model.modules() if isinstance(m, DenseBlock)]


def randomise_norms(model):
    """Non-trivial gamma, beta and running averages, so that a mix-up between layers shows
    (float32 values: ``reference_model`` copies through float32)."""
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("bottleneck", [True, False])
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_shared_statistics_block_equals_the_reference_over_two_steps(bottleneck, memory_efficient):
    fast = tiny(bottleneck)
    randomise_norms(fast)
    ref = reference_model(fast).double()
    fast.memory_efficient = memory_efficient
    fast = fast.to(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert all(fused_block.chosen(b.train(), x) for b in blocks(fast))
    assert_same(fast, ref, x)
    assert_same(fast, ref, x)  # the running averages of step one feed nothing, but must match


def test_each_layer_keeps_its_own_momentum_and_the_block_counts_batches_once_per_step():
    fast = tiny()
    for i, layer in enumerate(blocks(fast)[0].values()):
        layer.norm1.momentum = 0.1 * (i + 1)
    ref = reference_model(fast).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert_same(fast, ref, x)
    assert all(int(m.num_batches_tracked) == 1 for m in fast.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_the_per_layer_route_still_equals_the_reference_when_chosen(memory_efficient):
    fast = tiny()
    for b in blocks(fast):
        b.fused = False
    ref = reference_model(fast).double()
    fast.memory_efficient = memory_efficient
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert_same(fast, ref, x)


def test_training_step_goes_through_one_node_per_block():
    fast = tiny().train()
    out = fast(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    names, todo, seen = [], [out.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        todo += [n for n, _ in node.next_functions]
    assert names.count("_SharedStatsBlockBackward") == 2
    assert "CatBackward0" not in names


def test_by_default_the_block_route_is_taken_on_small_maps_only():
    block = blocks(tiny())[0].train()
    assert fused_block.chosen(block, torch.zeros(16, 6, 8, 8, dtype=torch.float64))      # 1,024 values
    assert not fused_block.chosen(block, torch.zeros(17, 6, 8, 8, dtype=torch.float64))  # 1,088
    block.fused = True
    assert fused_block.chosen(block, torch.zeros(17, 6, 8, 8, dtype=torch.float64))
    block.fused = False
    assert not fused_block.chosen(block, torch.zeros(2, 6, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("kw", [dict(drop_rate=0.2), dict(bn_momentum=None)], ids=["dropout", "cumulative-bn"])
def test_dropout_and_cumulative_batchnorm_take_the_per_layer_route(kw):
    model = tiny(**kw).train()
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert not fused_block.supported(blocks(model)[0], x)
    assert fused_block.supported(blocks(tiny())[0].train(), x)
    assert not fused_block.supported(blocks(tiny())[0].eval(), x)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_autocast_step_matches_the_per_layer_route(channels_last):
    torch.manual_seed(4)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fused = DenseNet(growth_rate=8, block_config=(4, 4), num_init_features=16, bn_size=4, stem="cifar",
                     num_classes=5).to(memory_format=fmt)
    plain = DenseNet(growth_rate=8, block_config=(4, 4), num_init_features=16, bn_size=4, stem="cifar",
                     num_classes=5).to(memory_format=fmt)
    plain.load_state_dict(fused.state_dict())
    for b in blocks(plain):
        b.fused = False
    for b in blocks(fused):
        b.fused = True
    x = torch.randn(8, 3, 16, 16).contiguous(memory_format=fmt)
    results = []
    for model in (fused, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().square().sum().backward()
        results.append((out.float(), {n: p.grad for n, p in model.named_parameters()}, model.state_dict()))
    (out_f, grads_f, state_f), (out_p, grads_p, state_p) = results
    assert (out_f - out_p).norm() <= 2e-2 * out_p.norm()
    for name, g in grads_p.items():
        assert grads_f[name].dtype == torch.float32, name
        assert (grads_f[name] - g).norm() <= 5e-2 * g.norm() + 1e-6, name
    for name, b in state_p.items():
        if b.is_floating_point():
            assert (state_f[name] - b).norm() <= 1e-2 * b.norm() + 1e-6, name


def test_a_float32_block_input_under_autocast_is_promoted_like_torch_cat():
    torch.manual_seed(6)
    block = DenseBlock(2, 8, 4, bn_size=2).train()
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.float32 and out.shape == (4, 16, 6, 6)
    torch.testing.assert_close(out[:, :8], x.detach())
    out.sum().backward()
    assert x.grad.dtype == torch.float32
