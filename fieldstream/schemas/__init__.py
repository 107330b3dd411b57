"""Avro schemas (one record per .avsc file, versioned), the codec, and registry use."""
