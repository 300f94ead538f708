"""Kafka plumbing: the embedded broker, topic administration, producers."""
