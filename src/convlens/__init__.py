"""convlens: the classic two-conv MNIST ConvNet, trained with Lightning, configured with Hydra, looked inside."""
