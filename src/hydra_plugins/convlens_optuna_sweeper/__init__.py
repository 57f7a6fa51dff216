"""convlens's Optuna sweeper, found by Hydra in its ``hydra_plugins`` namespace package."""
