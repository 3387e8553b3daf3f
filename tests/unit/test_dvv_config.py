"""DVV settings from the environment."""

import pytest

from hub.adapters.dvv.client import ClientConfig, DvvError
from hub.config import Settings


def test_dvv_settings_from_env_and_password_not_printed():
    s = Settings.from_env(
        {
            "HUB_DVV_URL": "https://ss.example/r1/FI/GOV/0245437-2/VTJmutpa/VTJmutpa/api/v1",
            "HUB_DVV_XROAD_CLIENT": "FI/MUN/0201256-6/hub",
            "HUB_DVV_USERNAME": "mutp",
            "HUB_DVV_PASSWORD": "very-secret",
            "HUB_DVV_MUNICIPALITIES": "091, 049,",
            "HUB_DVV_RETRIES": "3",
        }
    )
    assert s.dvv_municipalities == ("091", "049") and s.dvv_retries == 3 and s.dvv_timeout == 30.0
    assert "very-secret" not in repr(s)
    config = ClientConfig.from_settings(s)
    assert config.base_url.endswith("/api/v1") and config.password == "very-secret" and config.retries == 3


def test_missing_url_is_a_clear_error():
    with pytest.raises(DvvError, match="HUB_DVV_URL"):
        ClientConfig.from_settings(Settings.from_env({}))


def test_bad_number_is_a_clear_error():
    with pytest.raises(ValueError, match="HUB_DVV_RETRIES"):
        Settings.from_env({"HUB_DVV_RETRIES": "many"})
