"""The seeded yarn-store clickstream, and publishing it to Kafka."""
