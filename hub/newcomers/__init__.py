"""Newcomer detection: who, in the population-register changes, is an immigrant newcomer."""
