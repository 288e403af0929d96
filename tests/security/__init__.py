"""Security checks of the gateway and the worker API (docs/reliability.md)."""
