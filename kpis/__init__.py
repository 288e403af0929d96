"""KPI semantics in plain Python: time buckets, entity state, contributions and formulas.

Nothing here imports Faust, Kafka, Redis or Prometheus: the agents, the exporters and the API
are thin adapters around these modules, which are tested in milliseconds.
"""
