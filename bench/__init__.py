"""Benchmarks of the allocation engine; ``python -m bench`` runs them and writes the record."""
