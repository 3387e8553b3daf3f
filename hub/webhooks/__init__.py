"""Webhook delivery for recipients without Kafka: the pure rules (URL policy, backoff, signing, body)."""
