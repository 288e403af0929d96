"""Insights on top of the exact KPIs: targets, forecasts, anomaly scores and churn risk.

Pure Python like the rest of `kpis/` (no Faust, Kafka, Redis or Prometheus); the worker's
exporters (`agents/exporters/insights.py`) gather the inputs across workers and serve them.
See docs/insights.md.
"""
