"""Kafka side of headrace: the event contract, consuming, producing, the local stack."""
