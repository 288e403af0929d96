"""What the worker shows the world: Prometheus metrics, the JSON API, cluster-wide merging."""
