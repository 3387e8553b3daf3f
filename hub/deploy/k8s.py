"""The generated Kubernetes files of deploy/k8s/base/generated/, and the parameters they are made
with. `python -m hub.deploy.k8s [REPO_ROOT]` (scripts/generate-k8s) writes them; a test compares."""

from __future__ import annotations

import sys
from pathlib import Path

from hub.deploy import render
from hub.deploy.acls import all_acls
from hub.deploy.topics import hub_topics
from hub.routing.reference import Reference, default_reference

APP_ID = "integration-hub"  # = HUB_APP_ID of deploy/k8s/base/worker.yaml
PARTITIONS = 12  # = HUB_TOPIC_PARTITIONS there: at most 12 workers share the person-keyed topics
REPLICAS = 3  # three brokers (deploy/k8s/base/kafka.yaml), min.insync.replicas 2
GENERATED_DIR = Path("deploy/k8s/base/generated")
TOPICS_FILE = GENERATED_DIR / "kafka-topics.yaml"
USERS_FILE = GENERATED_DIR / "kafka-users.yaml"


def generated_files(reference: Reference | None = None) -> dict[Path, str]:
    """Relative path -> content of every generated manifest."""
    reference = reference or default_reference()
    return {
        TOPICS_FILE: render.strimzi_topics(hub_topics(reference, partitions=PARTITIONS, replicas=REPLICAS)),
        USERS_FILE: render.strimzi_users(all_acls(reference, app_id=APP_ID)),
    }


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path.cwd()
    for path, text in generated_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
