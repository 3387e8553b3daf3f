"""Consent registry and consent decisions (see the consent issue)."""
