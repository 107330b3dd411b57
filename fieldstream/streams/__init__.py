"""Faust wiring: the app, its topics and agents. Thin: the work is in pure modules."""
