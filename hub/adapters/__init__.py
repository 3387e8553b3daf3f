"""Adapters: everything that talks to the outside world (broker, DVV, database, HTTP)."""
