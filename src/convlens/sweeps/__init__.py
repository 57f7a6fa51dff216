"""Sweeps: what a job of a multirun needs to know, the HParams entry of each run, and the report of a sweep."""
