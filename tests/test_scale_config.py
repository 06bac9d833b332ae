"""The scale-out settings refuse garbage with a sentence naming the setting."""

from __future__ import annotations

import pytest

from signaling.config import ConfigError, from_env

SECRET = {"CALLBOOK_MEDIA_SECRET": "s" * 32}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CALLBOOK_DRAIN_GRACE_S": "soon"}, "CALLBOOK_DRAIN_GRACE_S must be an integer"),
        ({"CALLBOOK_DRAIN_GRACE_S": "-1"}, "CALLBOOK_DRAIN_GRACE_S must be between 0 and 3600"),
        ({"CALLBOOK_DRAIN_GRACE_S": "99999"}, "CALLBOOK_DRAIN_GRACE_S must be between"),
        ({"CALLBOOK_MEDIA_REGISTRY": "onn", **SECRET}, "CALLBOOK_MEDIA_REGISTRY must be on or off"),
        ({"CALLBOOK_MEDIA_REGISTRY": "2", **SECRET}, "CALLBOOK_MEDIA_REGISTRY must be on or off"),
    ],
)
def test_garbage_scale_settings_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        from_env(env)


@pytest.mark.parametrize(("raw", "on"), [("on", True), ("TRUE", True), ("off", False), ("", False)])
def test_the_registry_switch_reads_the_usual_words(raw: str, on: bool) -> None:
    assert from_env({"CALLBOOK_MEDIA_REGISTRY": raw, **SECRET}).media_registry is on
    assert from_env({"CALLBOOK_DRAIN_GRACE_S": "12"}).drain_grace_s == 12
