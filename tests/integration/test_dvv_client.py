"""The DVV client against a local replay server (real HTTP on 127.0.0.1): paging, retry, errors."""

import base64
import datetime as dt

import pytest

from hub.adapters.dvv.client import ClientConfig, DvvClient, DvvError, DvvUnavailable
from hub.adapters.dvv.page import MalformedPage
from tests.dvv_replay import ReplayServer, fixture_pages


def client(server, **kw):
    waits = []
    config = ClientConfig(base_url=server.url, xroad_client="FI-TEST/MUN/0000000-0/hub-test", username="mutp", password="s3cret", backoff=0.001, max_backoff=0.01, **kw)
    return DvvClient(config, sleep=waits.append), waits


def test_first_key_and_paging_until_up_to_date_with_xroad_and_basic_auth():
    first, pages = fixture_pages()
    with ReplayServer(pages, first) as server:
        c, _ = client(server)
        assert c.first_key(dt.date(2026, 5, 11)) == first
        got = list(c.pages(first))
    assert [p.record_key for p in got] == [5446623423, 5446623512]
    assert [p.next_key for p in got] == [5446623512, 5446623600] and got[-1].up_to_date
    assert [len(p.changes) for p in got] == [7, 5]
    assert server.requests[0]["path"] == "/api/v1/kirjausavain/2026-05-11"
    for req in server.requests:
        headers = {k.lower(): v for k, v in req["headers"].items()}
        assert headers["x-road-client"] == "FI-TEST/MUN/0000000-0/hub-test"
        assert headers["authorization"] == "Basic " + base64.b64encode(b"mutp:s3cret").decode()
        assert headers["accept"] == "application/json"
    assert server.requests[1]["body"] == {"viimeisinKirjausavain": first}


def test_http_500_then_success_is_retried_with_backoff():
    first, pages = fixture_pages()
    with ReplayServer(pages, first) as server:
        server.fail[first] = [500, 503]
        c, waits = client(server)
        got = list(c.pages(first))
    assert len(got) == 2 and server.muutokset_keys() == [first, first, first, 5446623512]
    assert len(waits) == 2 and all(0 < w <= 0.01 for w in waits)


def test_retries_are_bounded():
    first, pages = fixture_pages()
    with ReplayServer(pages, first) as server:
        server.fail[first] = [500] * 10
        c, waits = client(server, retries=3)
        with pytest.raises(DvvUnavailable, match="HTTP 500 after 3 attempts"):
            list(c.pages(first))
    assert len(waits) == 2


def test_client_errors_fail_at_once_with_a_hint():
    first, pages = fixture_pages()
    with ReplayServer(pages, first) as server:
        server.fail[first] = [401]
        c, waits = client(server)
        with pytest.raises(DvvError, match="HTTP 401.*HUB_DVV_USERNAME"):
            c.changes(first)
    assert waits == []


def test_connection_refused_is_retried_then_reported():
    with ReplayServer({}, 1) as server:
        url = server.url
    c = DvvClient(ClientConfig(base_url=url, retries=2, backoff=0.001), sleep=lambda s: None)
    with pytest.raises(DvvUnavailable, match="connection error"):
        c.changes(1)


def test_malformed_page_raises_a_precise_error():
    with ReplayServer({7: b'{"viimeisinKirjausavain": 8, "muutokset": "oops", "ajanTasalla": true}'}, 7) as server:
        c, _ = client(server)
        with pytest.raises(MalformedPage, match="record key 7.*muutokset must be a list") as err:
            c.changes(7)
    assert err.value.raw.startswith('{"viimeisinKirjausavain": 8')


def test_not_json_page_raises_a_precise_error():
    with ReplayServer({7: b"<html>proxy error</html>"}, 7) as server:
        c, _ = client(server)
        with pytest.raises(MalformedPage, match="JSON object"):
            c.changes(7)


def test_base_data_request():
    with ReplayServer({}, 1, perustiedot=b'{"perustiedot": [{"henkilotunnus": "x", "tietoryhmat": []}], "ajanTasalla": true}') as server:
        c, _ = client(server)
        out = c.base_data(["010190-900R"])
    assert out["perustiedot"][0]["tietoryhmat"] == []
    assert server.requests[0]["body"] == {"hetulista": ["010190-900R"]}
