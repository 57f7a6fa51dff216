"""Experiment trackers a lab may already use (MLflow, Weights & Biases) beside TensorBoard: each an optional extra."""
