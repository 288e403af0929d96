"""Test helpers that run real services (Kafka, Tansu, Redis, Prometheus)."""
