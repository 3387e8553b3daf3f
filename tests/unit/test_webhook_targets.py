"""Webhook targets: only public addresses, in whatever form a URL gives them; loopback only with
the explicit allowance (HUB_WEBHOOKS_ALLOW_LOOPBACK); credentials never shown."""

import ipaddress

import pytest

from hub.config import Settings
from hub.webhooks.policy import TargetRefused, WebhookError, check_url, ip_literal, redact_url, refused_address

REFUSED = [
    # link-local, incl. the metadata address of AWS, GCP, Azure and Oracle, and its other forms
    "https://169.254.169.254/latest/meta-data/", "https://169.254.1.1/", "https://[fe80::1]/", "https://[fe80::1%25eth0]/",
    "https://2852039166/", "https://0xa9fea9fe/", "https://0251.0376.0251.0376/", "https://[::ffff:169.254.169.254]/",
    "https://[64:ff9b::a9fe:a9fe]/", "https://[2002:a9fe:a9fe::]/",
    # cloud metadata names and internal-only names
    "https://metadata.google.internal/computeMetadata/v1/", "https://METADATA.GOOGLE.INTERNAL./", "https://metadata/",
    "https://instance-data.ec2.internal/", "https://[fd00:ec2::254]/", "https://100.100.100.200/", "https://admin.internal/",
    "https://printer.local/", "https://intranet/",
    # private, shared, unique local
    "https://10.0.0.1/", "https://172.16.5.4/", "https://192.168.1.1/", "https://100.64.0.1/", "https://[fd12:3456::1]/",
    "https://[::ffff:10.0.0.1]/",
    # loopback in every form, and the unspecified address (which reaches the host itself)
    "https://127.0.0.1/", "https://127.8.9.10/", "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[::127.0.0.1]/",
    "https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/", "https://127.1/", "https://0x7f.1/",
    "https://localhost/", "https://api.localhost/", "https://0.0.0.0/", "https://0/", "https://[::]/",
    # multicast, reserved, broadcast
    "https://224.0.0.1/", "https://[ff02::1]/", "https://240.0.0.1/", "https://255.255.255.255/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_targets_are_refused_at_registration(url):
    with pytest.raises(TargetRefused, match="public"):
        check_url(url)


@pytest.mark.parametrize("url", ["https://receiver.example.fi/hook", "https://8.8.8.8/x", "https://[2606:4700:4700::1111]/x",
                                 "https://[::ffff:8.8.8.8]/x", "https://receiver.example.fi:8443/hook?v=1"])
def test_public_https_targets_are_accepted(url):
    assert check_url(url) == url


def test_loopback_and_plain_http_to_it_only_with_the_allowance():
    for url in ("http://127.0.0.1:8080/x", "https://127.0.0.1/x", "http://localhost/x", "http://[::1]:9/x", "https://[::ffff:127.0.0.1]/"):
        with pytest.raises(TargetRefused):
            check_url(url)
        assert check_url(url, allow_loopback=True) == url
    # the allowance is for loopback only: never private, link-local, metadata or plain http elsewhere
    for url in ("https://169.254.169.254/", "https://10.0.0.1/", "https://metadata.google.internal/", "https://0.0.0.0/",
                "http://receiver.example.fi/hook"):
        with pytest.raises(WebhookError):
            check_url(url, allow_loopback=True)
    for bad in ("ftp://x.example/y", "receiver.example.fi", "https://", "https://receiver.example.fi:99999/"):
        with pytest.raises(WebhookError):
            check_url(bad, allow_loopback=True)


def test_the_allowance_is_off_unless_set():
    assert Settings.from_env({}).webhooks_allow_loopback is False
    assert Settings.from_env({"HUB_WEBHOOKS_ALLOW_LOOPBACK": "on"}).webhooks_allow_loopback is True
    assert Settings.from_env({"HUB_WEBHOOKS_ALLOW_LOOPBACK": "off"}).webhooks_allow_loopback is False


def test_address_literals_read_as_the_resolver_reads_them():
    assert ip_literal("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert ip_literal("0177.0.0.01") == ipaddress.ip_address("127.0.0.1")
    assert ip_literal("10.1") == ipaddress.ip_address("10.0.0.1")
    assert ip_literal("receiver.example.fi") is None and ip_literal("256.1.1.1") is None and ip_literal("1.2.3.4.5") is None
    assert refused_address(ipaddress.ip_address("93.184.215.14")) is None
    assert refused_address(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"
    assert refused_address(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True) is None


def test_errors_and_listings_never_show_credentials():
    url = "https://hub:s3cret-pass@receiver.example.fi:8443/hook?token=tok-123&x=1#frag"
    shown = redact_url(url)
    assert shown == "https://***@receiver.example.fi:8443/hook?token=***&x=***"
    assert "s3cret" not in shown and "tok-123" not in shown and "hub:" not in shown
    with pytest.raises(WebhookError) as err:
        check_url("http://hub:s3cret-pass@receiver.example.fi/hook?token=tok-123")
    assert "s3cret" not in str(err.value) and "tok-123" not in str(err.value)
