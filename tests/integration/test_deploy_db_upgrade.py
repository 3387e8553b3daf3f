"""The Kubernetes workers' init container, `hub db upgrade`, as three pods start it at once on an
empty PostgreSQL database: every one exits 0 and the database is at head (the advisory lock
serialises them; the later ones find the schema at head)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from hub.adapters import database
from tests.conftest import throwaway_database
from tests.unit.test_deploy_manifests import _worker

pytestmark = pytest.mark.integration

PODS = 3


def test_three_init_containers_upgrade_an_empty_database_together(pg_admin_url, tmp_path):
    (init,) = _worker()["spec"]["template"]["spec"]["initContainers"]
    values = {e["name"]: e["value"] for e in init["env"] if "value" in e}
    secrets = {"HUB_PERSON_KEY_SECRET": "test-person-key-" + "0" * 32,
               "HUB_DATA_KEYS": base64.urlsafe_b64encode(b"k" * 32).decode()}
    with throwaway_database(pg_admin_url, "hub_init") as url:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, **values, **secrets,
               "HUB_DATABASE_URL": url, "HUB_DATA_DIR": str(tmp_path)}
        assert {e["name"] for e in init["env"]} <= set(env)  # every variable the manifest sets, set here
        pods = [subprocess.Popen([sys.executable, "-m", "hub.cli", *init["args"]], env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(PODS)]
        results = []
        for pod in pods:
            try:
                out, err = pod.communicate(timeout=240)
            finally:
                if pod.poll() is None:
                    pod.kill()
                    pod.wait()
            results.append((pod.returncode, out, err))
        for code, out, err in results:
            assert code == 0 and "Traceback" not in err, err[-2000:]
            assert out.strip().endswith(f"is at {database.head_revision(url)}"), out
        assert database.current_revisions(url) == {database.head_revision(url)}
