"""Routing of newcomers to the responsible authorities: reference data, rules as data,
the pure `route()` and the referral lifecycle."""
