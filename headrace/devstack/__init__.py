"""The local stack: one Kafka broker and one Redis server on 127.0.0.1, without Docker."""
