"""The municipal integration programme's indicators (`hub report`): pure computation and its ledger query."""
