"""A trained network as a portable file: ONNX for onnxruntime (any language), ``.pt2`` for ``torch.export``."""
