"""Faults that must lose nothing: a diverging loss, Ctrl-C or SIGTERM, a kill -9 in the middle of a save."""
