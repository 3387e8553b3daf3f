"""The DVV client on responses nested deeper than the hub's JSON bound (hub/schemas/bounds.py), from
a local replay server (real HTTP on 127.0.0.1): a precise MalformedPage, never a RecursionError."""

import pytest

from hub.adapters.dvv.client import ClientConfig, DvvClient
from hub.adapters.dvv.page import MalformedPage
from tests.dvv_replay import ReplayServer

DEEP = b"[" * 1000 + b"]" * 1000


def _client(server) -> DvvClient:
    return DvvClient(ClientConfig(base_url=server.url, xroad_client="FI-TEST/MUN/0000000-0/hub-test", username="mutp", password="s3cret"), sleep=lambda s: None)


def test_a_page_nested_1000_deep_is_a_malformed_page_out_of_bounds():
    with ReplayServer({7: b'{"viimeisinKirjausavain": 8, "ajanTasalla": true, "muutokset": [' + DEEP + b"]}"}, 7) as server:
        with pytest.raises(MalformedPage) as err:
            _client(server).changes(7)
    assert err.value.reason == "out_of_bounds" and "1002 levels deep; at most 32" in err.value.message


def test_a_base_data_response_nested_1000_deep_is_a_malformed_page_out_of_bounds():
    with ReplayServer({}, 1, perustiedot=b'{"perustiedot": ' + DEEP + b"}") as server:
        with pytest.raises(MalformedPage) as err:
            _client(server).base_data(["010190-900P"])
    assert err.value.reason == "out_of_bounds" and err.value.location == "POST perustiedot" and "at most 32" in err.value.message
