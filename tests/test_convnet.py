import torch

from convlens.models.convnet import ConvNet


def test_every_layer_has_the_tutorial_shape():
    net = ConvNet()
    x = torch.zeros(3, 1, 28, 28)
    a1 = net.conv1(x)
    assert a1.shape == (3, 4, 28, 28)
    p1 = net.pool(a1)
    assert p1.shape == (3, 4, 14, 14)
    a2 = net.conv2(p1)
    assert a2.shape == (3, 8, 14, 14)
    p2 = net.pool(a2)
    assert p2.shape == (3, 8, 7, 7)
    assert net.fc1.in_features == 392 and net.fc1(p2.flatten(1)).shape == (3, 512)
    assert net(x).shape == (3, 10)


def test_layer_sizes_match_the_tutorial():
    net = ConvNet()
    assert tuple(net.conv1.weight.shape) == (4, 1, 5, 5)
    assert tuple(net.conv2.weight.shape) == (8, 4, 5, 5)
    assert tuple(net.fc2.weight.shape) == (10, 512)
    assert net.dropout.p == 0.5


def test_output_is_log_probabilities():
    net = ConvNet().eval()
    log_probs = net(torch.rand(5, 1, 28, 28))
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(5))


def test_features_are_the_post_relu_conv_outputs():
    net = ConvNet()
    x = torch.randn(2, 1, 28, 28)
    a1, a2 = net.features(x)
    assert a1.shape == (2, 4, 28, 28) and a2.shape == (2, 8, 14, 14)
    assert a1.min() >= 0 and a2.min() >= 0
    torch.testing.assert_close(a1, torch.relu(net.conv1(x)))


def test_width_comes_from_arguments():
    net = ConvNet(depth=(6, 12), hidden=64, image_size=28, num_classes=3)
    assert net.fc1.in_features == 12 * 7 * 7
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 3)


def test_dropout_keeps_the_activations_dtype_and_draws_the_float32_mask():
    """bfloat16 activations stay bfloat16 (a float32 mask would promote them, and a bfloat16 network's next layer
    would refuse them), and keep exactly the units a float32 input keeps under the same seed."""
    dropout = ConvNet(dropout=0.3).dropout.train()
    x = torch.rand(64, 512) + 0.5
    torch.manual_seed(0)
    kept32 = dropout(x) != 0
    torch.manual_seed(0)
    out16 = dropout(x.bfloat16())
    assert out16.dtype == torch.bfloat16
    assert torch.equal(out16 != 0, kept32)
    assert abs(kept32.float().mean().item() - 0.7) < 0.01

    net = ConvNet().bfloat16().train()
    assert net(torch.rand(3, 1, 28, 28, dtype=torch.bfloat16)).dtype == torch.bfloat16
