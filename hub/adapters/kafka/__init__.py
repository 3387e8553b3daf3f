"""The hub's Kafka wing: publishing and the publisher check of consumed records."""
