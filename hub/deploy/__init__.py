"""Deployment descriptions generated from the hub's own names and reference data (pure functions)."""
