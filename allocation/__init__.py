"""allocation: where each stage of an inference flow should run, and what it costs.

The engine (loading, compilation, estimation, the Pareto filter) lives here and imports
no orchestration; the Prefect flows in `flows` call it.
"""

__version__ = "0.1.0"
