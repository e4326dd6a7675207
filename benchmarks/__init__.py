"""Benchmarks of airflow-provider-capillary (issue 6).

``benchmarks/run.py`` runs the cases side by side with their baselines and rewrites
``BENCHMARKS.md``; ``tests/bench`` runs every case at a tiny size so that none of them rots.
"""
