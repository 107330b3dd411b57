"""The local stack: real Kafka, schema registry and PostgreSQL servers, no Docker."""
