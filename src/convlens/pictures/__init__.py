"""Pictures of what the ConvNet learned and sees: pure drawing functions, and the callback that logs them."""
