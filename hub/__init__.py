"""Integration hub: population-register changes in, newcomers routed to the responsible authorities."""

__version__ = "0.1.0"
