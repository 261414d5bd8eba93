"""Helpers shared by the unit, integration and acceptance tests (not tests themselves)."""
