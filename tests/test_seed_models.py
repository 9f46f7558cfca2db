"""The seeds' own networks, rebuilt: every shape or figure a seed's text gives is checked here."""
import torch

from densekit.models import DenseBlock, Transition, create_model


def stage_shapes(model, x):
    """Output shape of every child of ``model.features``, from a real forward pass."""
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
             for n, m in model.features.named_children()]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return shapes


def test_d2l_dense_block_of_two_layers_with_growth_10_turns_3_channels_into_23():
    # d2l: blk = DenseBlock(2, 10); X (4, 3, 8, 8) -> Y.shape (4, 23, 8, 8)
    block = DenseBlock(2, 3, 10, bn_size=None)
    y = block(torch.rand(4, 3, 8, 8))
    assert y.shape == (4, 23, 8, 8)
    # d2l: transition_block(10) on that Y -> (4, 10, 4, 4)
    assert Transition(23, 10)(y).shape == (4, 10, 4, 4)


def test_d2l_fashion_net_halves_channels_between_four_plain_blocks():
    model = create_model("seed-d2l-fashion")
    layer = model.features.denseblock1.denselayer1
    assert not hasattr(layer, "conv2") and layer.conv1.kernel_size == (3, 3)   # BN-ReLU-conv3x3 only
    assert model.features.conv0.kernel_size == (7, 7) and model.features.conv0.out_channels == 64
    shapes = stage_shapes(model, torch.rand(1, 1, 96, 96))   # d2l resizes Fashion-MNIST to 96x96
    assert shapes["pool0"] == (1, 64, 24, 24)
    assert shapes["denseblock1"] == (1, 64 + 4 * 32, 24, 24)
    assert shapes["transition1"] == (1, 96, 12, 12)
    assert shapes["transition2"] == (1, (96 + 128) // 2, 6, 6)
    assert shapes["transition3"] == (1, (112 + 128) // 2, 3, 3)
    assert shapes["denseblock4"] == (1, 248, 3, 3)
    assert model(torch.rand(2, 1, 96, 96)).shape == (2, 10)


def test_keras_cifar10_net_matches_the_shapes_in_the_seeds_comments():
    model = create_model("seed-keras-cifar10")
    assert model.features.norm5.eps == 1.001e-5
    layer = model.features.denseblock1.denselayer1
    assert layer.conv1.out_channels == 2 * 32                        # the 2k bottleneck
    shapes = stage_shapes(model, torch.rand(1, 3, 32, 32))
    assert shapes["norm0"] == (1, 16, 32, 32)                        # "X: (None, 32, 32, 16)"
    assert shapes["denseblock2"] == (1, 328, 16, 16)                 # "X: (None, 16, 16, 328)"
    assert shapes["transition2"] == (1, 164, 8, 8)                   # "-> (None, 8, 8, 164)"
    assert "transition3" in shapes and shapes["transition3"] == (1, 338, 4, 4)  # after every block
    assert list(model.features.named_children())[:3] == [("conv0", model.features.conv0),
                                                         ("relu0", model.features.relu0),
                                                         ("norm0", model.features.norm0)]


def test_densenet_tensorflow_mnist_net_has_k_wide_transitions_and_dropout():
    model = create_model("seed-tf-mnist")
    assert model.features.conv0.kernel_size == (7, 7) and model.features.conv0.out_channels == 2 * 12
    assert not hasattr(model.features, "norm0")                      # conv then max-pool, no BN
    assert [len(getattr(model.features, f"denseblock{i}")) for i in (1, 2, 3)] == [4, 4, 32]
    assert model.features.transition1.conv.out_channels == 12        # filter=self.filters
    assert model.features.transition2.conv.out_channels == 12
    assert model.features.denseblock1.denselayer1.drop_rate == 0.2
    shapes = stage_shapes(model, torch.rand(1, 1, 28, 28))
    assert shapes["denseblock3"] == (1, 12 + 32 * 12, 1, 1)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_tf_slim_quiz_net_has_three_blocks_of_2_4_6_bottleneck_layers_with_growth_32():
    model = create_model("seed-slim-quiz", num_classes=5)
    assert [len(getattr(model.features, f"denseblock{i}")) for i in (1, 2, 3)] == [2, 4, 6]
    layer = model.features.denseblock3.denselayer6
    assert layer.conv1.out_channels == 4 * 32 and layer.conv2.out_channels == 32
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 5)
