"""The one exception type a user can cause: its message is a single sentence naming the problem and the fix."""


class ConvlensError(Exception):
    """Raised for bad input (config, files, checkpoints); entry points print it as one line and exit 1."""
