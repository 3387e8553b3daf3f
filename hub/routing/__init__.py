"""Routing of newcomers to the responsible authorities (design §4): reference data, rules as data,
the pure `route()` and the referral lifecycle."""
