"""From raw Kafka records to valid readings: decode, validate, route the rest to the DLQ."""
