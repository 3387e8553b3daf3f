"""HTTP client of DVV's VTJ-muutosrajapinta (REST/JSON over Suomi.fi-palveluväylä / X-Road).

- `GET  {base}/kirjausavain/{date}`  -> the first record key of a day (`viimeisinKirjausavain`)
- `POST {base}/muutokset`            -> a page of changes after a key; page until `ajanTasalla`
- `POST {base}/perustiedot`          -> the base data of given persons

Every request carries `X-Road-Client` and HTTP Basic credentials from configuration. 429, 5xx
and connection errors are retried with bounded exponential backoff; anything else fails at once.
Standard library only (urllib), so the adapter adds no dependency.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from hub.adapters.dvv.page import MalformedPage, Page, parse_key, parse_page
from hub.schemas import bounds

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class DvvError(RuntimeError):
    """The change feed could not be read. The message names the endpoint and what to do."""


class DvvUnavailable(DvvError):
    """Retries were exhausted (429 / 5xx / connection errors)."""


@dataclass(frozen=True)
class ClientConfig:
    base_url: str  # ends in /api/v1
    xroad_client: str | None = None
    username: str | None = None
    password: str | None = None
    municipalities: tuple[str, ...] = ()
    timeout: float = 30.0
    retries: int = 5  # attempts per request
    backoff: float = 0.5  # first wait, seconds; doubles each retry
    max_backoff: float = 30.0

    @classmethod
    def from_settings(cls, settings) -> "ClientConfig":
        if not settings.dvv_url:
            raise DvvError("HUB_DVV_URL is not set; give the base URL of the VTJ-muutosrajapinta (…/api/v1)")
        return cls(
            base_url=settings.dvv_url,
            xroad_client=settings.dvv_xroad_client,
            username=settings.dvv_username,
            password=settings.dvv_password,
            municipalities=tuple(settings.dvv_municipalities),
            timeout=settings.dvv_timeout,
            retries=max(1, settings.dvv_retries),
        )


class DvvClient:
    """A synchronous client; `sleep` is injectable so tests need not wait."""

    def __init__(self, config: ClientConfig, *, sleep: Callable[[float], None] = time.sleep, opener: urllib.request.OpenerDirector | None = None):
        self.config = config
        self.sleep = sleep
        self.opener = opener or urllib.request.build_opener()

    # -- transport --------------------------------------------------------------------------------
    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "integration-hub"}
        if body:
            headers["Content-Type"] = "application/json"
        if self.config.xroad_client:
            headers["X-Road-Client"] = self.config.xroad_client
        if self.config.username is not None:
            token = base64.b64encode(f"{self.config.username}:{self.config.password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    def request(self, method: str, path: str, payload: dict | None = None) -> tuple[bytes, str]:
        """The response body of a successful request, and its URL. Retries what may pass later."""
        url = self.config.base_url.rstrip("/") + "/" + path.lstrip("/")
        data = json.dumps(payload, ensure_ascii=False).encode() if payload is not None else None
        attempts = max(1, self.config.retries)
        last = ""
        for attempt in range(1, attempts + 1):
            req = urllib.request.Request(url, data=data, method=method, headers=self._headers(data is not None))
            try:
                with self.opener.open(req, timeout=self.config.timeout) as resp:
                    return resp.read(), url
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
                if status not in RETRY_STATUS:
                    hint = " (check HUB_DVV_USERNAME / HUB_DVV_PASSWORD and the X-Road client id)" if status in (401, 403) else ""
                    raise DvvError(f"{method} {path}: HTTP {status}{hint}") from None
                last = f"HTTP {status}"
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = f"connection error ({type(getattr(exc, 'reason', exc)).__name__})"
                retry_after = None
            if attempt == attempts:
                break
            wait = min(self.config.max_backoff, self.config.backoff * 2 ** (attempt - 1))
            wait = retry_after if retry_after is not None and retry_after <= self.config.max_backoff else wait * (0.5 + random.random() / 2)
            log.warning("DVV %s %s: %s, retry %d/%d in %.2f s", method, path, last, attempt, attempts - 1, wait)
            self.sleep(wait)
        raise DvvUnavailable(f"{method} {path}: {last} after {attempts} attempts; the cursor was not advanced, run again later")

    def _json(self, method: str, path: str, payload: dict | None = None) -> tuple[object, bytes, str]:
        body, url = self.request(method, path, payload)
        try:
            return bounds.loads(body, "the response"), body, url
        except bounds.OutOfBounds as exc:
            raise MalformedPage(f"{method} {path}", exc.message, raw=body.decode("utf-8", "replace"), reason=exc.reason) from None
        except ValueError as exc:  # UnicodeDecodeError too
            raise MalformedPage(f"{method} {path}", f"response is not JSON ({type(exc).__name__})", raw=body.decode("utf-8", "replace")) from None

    # -- endpoints --------------------------------------------------------------------------------
    def first_key(self, day: dt.date) -> int:
        """`GET kirjausavain/{date}`: the record key to read the changes of `day` onwards from."""
        path = f"kirjausavain/{day.isoformat()}"
        obj, body, _ = self._json("GET", path)
        if not isinstance(obj, dict) or "viimeisinKirjausavain" not in obj:
            raise MalformedPage(f"GET {path}", "the response has no 'viimeisinKirjausavain'", raw=body.decode("utf-8", "replace"))
        return parse_key(obj["viimeisinKirjausavain"], f"GET {path}")

    def changes(self, key: int, hetulista: list[str] | None = None) -> Page:
        """`POST muutokset`: one page of changes after `key`. Raises MalformedPage for a bad page."""
        payload: dict = {"viimeisinKirjausavain": int(key)}
        if hetulista:
            payload["hetulista"] = list(hetulista)
        if self.config.municipalities:
            # unverified field name (not in public code): see docs/domain.md, population-register changes from DVV
            payload["kuntakoodit"] = list(self.config.municipalities)
        body, url = self.request("POST", "muutokset", payload)
        page = parse_page(body, origin=f"POST muutokset after record key {int(key)}")
        return replace(page, record_key=int(key))

    def pages(self, key: int, hetulista: list[str] | None = None, max_pages: int | None = None) -> Iterator[Page]:
        """The pages after `key` until the feed is up to date (`ajanTasalla`); a page's
        `record_key` is the key it was read after.

        The caller stores `page.next_key` only once the page is safely processed.
        """
        count = 0
        while True:
            page = self.changes(key, hetulista)
            yield page
            count += 1
            if page.up_to_date or (max_pages is not None and count >= max_pages):
                return
            if page.next_key == key and not page.changes:
                return  # no progress: DVV has nothing more although it did not say so
            key = page.next_key

    def base_data(self, hetulista: list[str], groups: list[str] | None = None) -> dict:
        """`POST perustiedot`: base data of the given persons (omit `groups` for all permitted)."""
        payload: dict = {"hetulista": list(hetulista)}
        if groups:
            payload["tietoryhmat"] = list(groups)
        obj, body, _ = self._json("POST", "perustiedot", payload)
        if not isinstance(obj, dict) or not isinstance(obj.get("perustiedot"), list):
            raise MalformedPage("POST perustiedot", "the response has no 'perustiedot' list", raw=body.decode("utf-8", "replace"))
        return obj


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
