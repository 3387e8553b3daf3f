"""The worker's thread switch interval: how long a thread that waits for the GIL waits at most.

On PostgreSQL, detection's and routing's database calls run on worker threads of their own
(`hub.adapters.database.DatabaseCalls`), so that the event loop goes on while the server answers.
After each round trip such a thread needs the GIL back; while the event loop runs Python code
(decoding and routing a batch) it gets it only when the loop waits for I/O or when the switch
interval has passed and the interpreter makes the loop hand it over. Python's interval is 5 ms: a
transaction of ten statements could wait 50 ms for the GIL alone, against about a millisecond of
its own work. With `interval_ms` (HUB_SWITCH_INTERVAL_MS, default 1) a round trip waits at most
that long; the interval matters only while another thread wants the GIL, so a worker whose threads
are idle switches no more often.
"""

from __future__ import annotations

import sys


def set_switch_interval(interval_ms: float) -> bool:
    """Set the interpreter's switch interval to `interval_ms`; False (nothing done) for 0."""
    if interval_ms <= 0:
        return False
    sys.setswitchinterval(interval_ms / 1000)
    return True
