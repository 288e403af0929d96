"""Fault-injection scenarios against Apache Kafka (docs/reliability.md)."""
