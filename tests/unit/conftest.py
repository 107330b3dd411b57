"""Unit tests see the settings' defaults, whatever FIELDSTREAM_* the shell running them exports."""

import os

import pytest


@pytest.fixture(autouse=True)
def _default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("FIELDSTREAM_")]:
        monkeypatch.delenv(name)
    from fieldstream.config.settings import load_settings

    load_settings.cache_clear()
