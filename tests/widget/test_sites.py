"""The sites file: the shipped demo site, every setting checked, reloads when the file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatsvc.web.sites import DEFAULT_STRINGS, SHIPPED_FILE, SiteError, SiteRegistry, parse_sites, registry


def test_shipped_file_has_the_demo_site() -> None:
    sites = registry("").sites()
    assert list(sites) == ["default"]
    site = sites["default"]
    assert site.title == "LotWize support" and site.origins == ("*",) and site.frame_ancestors() == "*"
    assert site.hours is not None and site.hours.timezone == "America/New_York"
    assert set(site.strings) == set(DEFAULT_STRINGS)
    assert registry("") is registry(str(SHIPPED_FILE))


def test_defaults_and_overrides() -> None:
    [site] = parse_sites('[sites.s]\nlocale = "ar-EG"\n[sites.s.strings]\nsend = "إرسال"\n').values()
    assert site.dir == "rtl" and site.position == "right" and site.color == "#1f6f5c"
    assert site.strings["send"] == "إرسال" and site.strings["yes"] == "Yes"
    assert site.strings["title"] == site.title == "Support"
    assert site.as_json()["dir"] == "rtl"


@pytest.mark.parametrize(("text", "message"), [
    ("[sites.a]\ncolor = 'red'\n", "sites.a.color must be a colour"),
    ("[sites.a]\ncolor = '#12345g'\n", "sites.a.color must be a colour"),
    ("[sites.a]\nposition = 'top'\n", "sites.a.position"),
    ("[sites.a]\norigins = ['https://ok.example', 'https://bad.example/path']\n", "'https://bad.example/path'"),
    ("[sites.a]\norigins = [\"https://x.example; script-src *\"]\n", "is not an origin"),
    ("[sites.a]\nlocale = 'english'\n", "sites.a.locale"),
    ("[sites.a]\nrequire_email = 'yes'\n", "sites.a.require_email must be true or false"),
    ("[sites.a]\ngreeting = ''\n", "sites.a.greeting must be a non-empty string"),
    ("[sites.a]\nwelcome = 'hi'\n", "unknown key(s) welcome"),
    ("[sites.a.strings]\nsned = 'x'\n", "sites.a.strings: unknown key(s) sned"),
    ("[sites.a.hours]\ntimezone = 'Mars/Olympus'\ndays = ['mon']\nopen = '09:00'\nclose = '17:00'\n",
     "not a known time zone"),
    ("[sites.a.hours]\ntimezone = 'UTC'\ndays = ['monday']\nopen = '09:00'\nclose = '17:00'\n", "days"),
    ("[sites.a.hours]\ntimezone = 'UTC'\ndays = ['mon']\nopen = '18:00'\nclose = '09:00'\n",
     "open must be before close"),
    ("[sites.a.hours]\ntimezone = 'UTC'\ndays = ['mon']\n", "needs exactly"),
    ("[sites.'a b']\n", "a site key is"),
    ("title = 'x'\n", "unknown top-level key(s) title"),
    ("", "defines no [sites.KEY] table"),
    ("[sites.a\n", "not valid TOML"),
])
def test_every_setting_is_checked(text: str, message: str) -> None:
    with pytest.raises(SiteError, match=None) as caught:
        parse_sites(text)
    assert message in str(caught.value)


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text('[sites.a]\ntitle = "One"\n')
    sites = SiteRegistry(path)
    assert sites.get("a").title == "One"  # type: ignore[union-attr]
    path.write_text('[sites.a]\ntitle = "Two, longer"\n[sites.b]\n')
    os.utime(path, ns=(1, 10**18))
    assert sites.get("a").title == "Two, longer"  # type: ignore[union-attr]
    assert sites.get("b") is not None and sites.get("c") is None
    path.unlink()
    with pytest.raises(SiteError, match="cannot read the sites file"):
        sites.sites()
