"""Prefect flows over the allocation engine."""
