"""How far a run has got: the console progress bar and a line in the run log at each validation."""
