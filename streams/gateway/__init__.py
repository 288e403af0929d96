"""The webhook gateway: provider webhooks in, canonical events durably on Kafka, exactly once."""
