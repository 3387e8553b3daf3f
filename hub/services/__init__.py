"""The hub's use cases: detect a batch of population changes, route a batch of newcomers, apply a
referral status (over the small ports of `ports.py`), and the consent registry's (over its database)."""
