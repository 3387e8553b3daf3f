"""The hub's Kafka wing: every module that talks to Kafka (the consumer, the producers, publishing,
the admin client, TLS/SASL options, the error decisions, the embedded broker)."""
