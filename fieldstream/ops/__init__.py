"""Operator tooling: what `fieldstream status` and `fieldstream config show` report."""
