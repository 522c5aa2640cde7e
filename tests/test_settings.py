from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatsvc.settings import FIELDS, Settings

DOC = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()


def test_every_setting_is_in_the_table_and_matches_the_dataclass() -> None:
    documented = re.findall(r"^\| `(CHATSVC_[A-Z_]+)` \| `--([a-z-]+)` \|", DOC, re.M)
    assert [(f.env, f.name.replace("_", "-")) for f in FIELDS] == documented
    defaults = Settings()
    for field in FIELDS:
        assert getattr(defaults, field.name) == field.default, field.name


def test_environment_and_overrides() -> None:
    s = Settings.from_env({"CHATSVC_PORT": "9001", "CHATSVC_IDENTITY_REQUIRED": "yes",
                           "CHATSVC_OFFER_TIMEOUT": "2.5", "CHATSVC_REDIS_URL": ""}, port=9002)
    assert s.port == 9002 and s.identity_required is True and s.offer_timeout == 2.5 and s.redis_url == ""


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="CHATSVC_PORT"):
        Settings.from_env({"CHATSVC_PORT": "eighty"})
    with pytest.raises(ValueError, match="CHATSVC_IDENTITY_REQUIRED"):
        Settings.from_env({"CHATSVC_IDENTITY_REQUIRED": "maybe"})


def test_origin_allowlist_and_base_url() -> None:
    s = Settings(allowed_origins="self, https://a.example/ ,", host="0.0.0.0", port=8123)
    assert s.origin_allowlist == ("self", "https://a.example")
    assert s.base_url == "http://127.0.0.1:8123"
