"""Memory-efficient mode (Pleiss et al. 2017, arXiv 1707.06990): recomputing concat-BN-ReLU(-conv1x1)
in backward must change nothing but memory. torchvision once shipped this mode silently broken, so
every observable of a training step is compared with and without it, in float64."""
import copy

import pytest
import torch

from densekit.models import DenseNet


def small_net(**kw):
    torch.manual_seed(0)
    args = dict(growth_rate=4, block_config=(3, 3), num_init_features=8, bn_size=2, stem="cifar", num_classes=3)
    return DenseNet(**{**args, **kw}).double().train()


def train_step(model, x, seed=1):
    """One forward/backward in training mode; returns logits, input grad, parameter grads, buffers."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)              # the same dropout masks in both modes
    out = model(x)
    (out * torch.tensor([1.0, -2.0, 0.5], dtype=out.dtype)).sum().backward()
    return (out.detach(), x.grad, {n: p.grad for n, p in model.named_parameters()},
            {n: b.clone() for n, b in model.named_buffers()})


X = torch.randn(4, 3, 8, 8, dtype=torch.float64)


@pytest.mark.parametrize("kw", [dict(), dict(bn_size=None), dict(drop_rate=0.2)],
                         ids=["bottleneck", "no-bottleneck", "dropout"])
def test_memory_efficient_gradients_equal_the_plain_ones_for_every_parameter_and_the_input(kw):
    plain = small_net(**kw)
    efficient = copy.deepcopy(plain)
    efficient.memory_efficient = True
    out_a, gx_a, grads_a, _ = train_step(plain, X)
    out_b, gx_b, grads_b, _ = train_step(efficient, X)
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(gx_b, gx_a)
    assert grads_a.keys() == grads_b.keys() and all(g is not None for g in grads_b.values())
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], msg=name)


def test_memory_efficient_mode_keeps_batchnorm_running_statistics_identical():
    # Recomputing BN in backward must not update its running mean/var a second time.
    plain = small_net()
    efficient = copy.deepcopy(plain)
    efficient.memory_efficient = True
    _, _, _, buffers_a = train_step(plain, X)
    _, _, _, buffers_b = train_step(efficient, X)
    for name in buffers_a:
        torch.testing.assert_close(buffers_b[name], buffers_a[name], msg=name)


def test_memory_efficient_mode_can_be_switched_at_run_time():
    model = small_net()
    reference = copy.deepcopy(model)
    assert not model.memory_efficient
    model.memory_efficient = True
    with torch.no_grad():                # inference is unchanged by the switch
        torch.testing.assert_close(model.eval()(X), reference.eval()(X))
    model.train(), reference.train()
    assert model.memory_efficient and all(layer.memory_efficient for layer in model.features.denseblock2.values())
    _, gx_on, grads_on, _ = train_step(model, X)
    model.zero_grad()
    _, gx_ref, grads_ref, _ = train_step(reference, X)
    torch.testing.assert_close(gx_on, gx_ref)
    for name in grads_ref:
        torch.testing.assert_close(grads_on[name], grads_ref[name], msg=name)
    model.memory_efficient = False       # and back: a plain step again matches a plain step
    assert not model.memory_efficient
    model.load_state_dict(reference.state_dict())
    model.zero_grad(), reference.zero_grad()
    _, gx_off, grads_off, _ = train_step(model, X, seed=2)
    _, gx_ref, grads_ref, _ = train_step(reference, X, seed=2)
    torch.testing.assert_close(gx_off, gx_ref)
    for name in grads_ref:
        torch.testing.assert_close(grads_off[name], grads_ref[name], msg=name)


def test_memory_efficient_mode_saves_fewer_activations_for_backward():
    def saved_bytes(model):
        seen = {}

        def pack(t):
            seen[(t.data_ptr(), tuple(t.shape))] = t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(X.clone().requires_grad_())
        return sum(seen.values())
    plain = small_net(block_config=(6, 6))
    efficient = copy.deepcopy(plain)
    efficient.memory_efficient = True
    assert saved_bytes(efficient) < 0.8 * saved_bytes(plain)
