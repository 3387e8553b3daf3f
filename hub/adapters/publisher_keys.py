"""Reads the publishers file (`HUB_PUBLISHERS`) and the keys it names from the environment.

```yaml
publishers:
  - id: integration-hub              # the hub itself (= HUB_APP_ID): signs what it publishes
    key_env: HUB_SIGNING_KEY
    sources: ["*"]                   # the hub publishes on behalf of others (DVV, `hub consent`)
    authorities: ["*"]
  - id: municipality:091
    key_env: HUB_PUBLISHER_KEY_MUNICIPALITY_091      # or a list, during a key rotation
    sources: [helsinki-kotoutumispalvelut]           # besides its own id
```
Keys live only in the environment (a Secret), never in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import yaml

from hub.domain.publishers import Publisher, Publishers

MIN_KEY_LENGTH = 16
SETTING = "HUB_PUBLISHERS"


class PublishersFileError(ValueError):
    """The publishers file is missing, malformed, or names a key that is not set."""


def _list(entry: dict, name: str, where: str) -> list[str]:
    value = entry.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PublishersFileError(f"{where}: `{name}` must be a list of strings")
    return value


def parse(data: object, env: Mapping[str, str], origin: str = SETTING) -> Publishers:
    """Publishers from the parsed YAML and the environment holding their keys."""
    if not isinstance(data, dict) or not isinstance(data.get("publishers"), list):
        raise PublishersFileError(f"{origin}: expected a mapping with a `publishers` list")
    publishers = []
    for i, entry in enumerate(data["publishers"], 1):
        where = f"{origin}: publisher #{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise PublishersFileError(f"{where}: needs an `id` (an authority id such as municipality:091, or the hub's app id)")
        where = f"{origin}: publisher {entry['id']}"
        unknown = set(entry) - {"id", "key_env", "sources", "authorities"}
        if unknown:
            raise PublishersFileError(f"{where}: unknown keys {sorted(unknown)} (a key itself never goes in the file: name its variable in `key_env`)")
        key_names = _list(entry, "key_env", where)
        if not key_names:
            raise PublishersFileError(f"{where}: `key_env` must name the environment variable holding its HMAC key")
        keys = []
        for var in key_names:
            secret = env.get(var) or ""
            if not secret:
                raise PublishersFileError(f"{where}: environment variable {var} (its key) is not set")
            if len(secret) < MIN_KEY_LENGTH:
                raise PublishersFileError(f"{where}: the key in {var} is shorter than {MIN_KEY_LENGTH} characters; use a random key of 32 bytes or more")
            keys.append(secret.encode())
        publishers.append(Publisher(entry["id"], tuple(keys), frozenset(_list(entry, "sources", where)), frozenset(_list(entry, "authorities", where))))
    try:
        return Publishers.of(publishers)
    except ValueError as exc:
        raise PublishersFileError(f"{origin}: {exc}") from None


def load(path: str | Path, env: Mapping[str, str]) -> Publishers:
    """Publishers from the file at `path`; errors name the file and the entry, never a key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PublishersFileError(f"{SETTING}={path}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PublishersFileError(f"{SETTING}={path}: not valid YAML ({type(exc).__name__})") from None
    return parse(data, env, f"{SETTING}={path}")
