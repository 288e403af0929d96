"""Benchmarks of crm-kpi against raw Kafka consumption and a Quix Streams baseline.

Run `python -m bench.run --help`; results are written to docs/performance.md.
"""
