"""`hub worker` with its /metrics port taken: a clear error naming the setting, no traceback."""

import os
import socket
import subprocess
import sys


def test_worker_with_a_taken_metrics_port_says_which_setting_to_change(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        env = {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_METRICS_PORT": str(taken.getsockname()[1]), "HUB_KAFKA_URL": "kafka://127.0.0.1:1"}
        r = subprocess.run([sys.executable, "-m", "hub.cli", "worker"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        taken.close()
    assert r.returncode == 1
    assert "HUB_METRICS_PORT" in r.stderr and "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr
