"""Sources of the stream pipeline: Redis Streams, Kafka and files, all emitting raw batches."""
