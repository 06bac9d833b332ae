"""The admission settings (per-source budgets, puzzles, argon2 pool, young lookups, renames):
defaults that protect production, values read as documented, garbage refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signaling.config import ConfigError, from_env

NAMES = [
    "CALLBOOK_SOURCE_SIGNUPS_PER_HOUR",
    "CALLBOOK_SOURCE_RECOVERIES_PER_HOUR",
    "CALLBOOK_SOURCE_CHALLENGES_PER_MINUTE",
    "CALLBOOK_PUZZLE_MAX_BITS",
    "CALLBOOK_PUZZLE_QUIET_PER_MINUTE",
    "CALLBOOK_ARGON2_WORKERS",
    "CALLBOOK_ARGON2_QUEUE",
    "CALLBOOK_YOUNG_LOOKUPS_PER_MINUTE",
    "CALLBOOK_YOUNG_LOOKUPS_STORE_PER_MINUTE",
    "CALLBOOK_RENAMES_PER_DAY",
]


def test_trusted_proxies_are_networks() -> None:
    config = from_env({"CALLBOOK_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1,::1"})
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32", "::1/128"]
    with pytest.raises(ConfigError, match=re.escape("CALLBOOK_TRUSTED_PROXIES: 'proxy.local'")):
        from_env({"CALLBOOK_TRUSTED_PROXIES": "proxy.local"})
    assert from_env({}).trusted_proxies == ()


def test_defaults_protect_a_production_server() -> None:
    config = from_env({})
    assert config.source_signups.burst == 10
    assert config.source_signups.per_s == pytest.approx(60 / 3600)
    assert config.source_recoveries.per_s == pytest.approx(30 / 3600)
    assert config.source_challenges.per_s == pytest.approx(5.0)
    assert config.puzzle.max_bits == 18 and config.puzzle_quiet_per_s == pytest.approx(1.0)
    assert config.argon2_workers >= 1 and config.argon2_queue == 16
    assert config.directory.young_lookup_burst == 5
    assert config.directory.young_store_lookup_refill_per_s == pytest.approx(5.0)
    assert config.directory.renames_per_day == 3


def test_values_are_read_as_documented() -> None:
    config = from_env(
        {
            "CALLBOOK_SOURCE_SIGNUPS_PER_HOUR": "120",
            "CALLBOOK_PUZZLE_MAX_BITS": "0",
            "CALLBOOK_ARGON2_WORKERS": "3",
            "CALLBOOK_YOUNG_LOOKUPS_PER_MINUTE": "10",
            "CALLBOOK_RENAMES_PER_DAY": "5",
        }
    )
    assert config.source_signups.per_s == pytest.approx(120 / 3600)
    assert config.puzzle.max_bits == 0 and config.argon2_workers == 3
    assert config.directory.young_lookup_burst == 10
    assert config.directory.young_lookup_refill_per_s == pytest.approx(10 / 60)
    assert config.directory.renames_per_day == 5


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("raw", ["lots", "-1", "99999999999"])
def test_garbage_is_refused_with_the_settings_name(name: str, raw: str) -> None:
    if name == "CALLBOOK_ARGON2_QUEUE" and raw == "-1":
        raw = "-2"
    with pytest.raises(ConfigError, match=re.escape(name)):
        from_env({name: raw})


@pytest.mark.parametrize("name", [*NAMES, "CALLBOOK_TRUSTED_PROXIES"])
def test_every_setting_is_in_the_readme(name: str) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"| `{name}` |" in readme
