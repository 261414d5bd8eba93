"""Helpers for the acceptance tests: scripts run as child processes, and store-time tools."""
