"""The producer: X API v2 filtered stream (or a replay file) to Kafka."""
