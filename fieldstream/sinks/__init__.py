"""Sinks: one module per destination behind one small protocol (base.Sink)."""
