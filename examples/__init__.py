"""Example pipelines to profile with `allocation profile`."""
