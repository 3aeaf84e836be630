"""The Spark Structured Streaming job: windowed aggregates per city into Cassandra."""
