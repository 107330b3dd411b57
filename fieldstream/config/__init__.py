"""Settings, one pydantic-settings class per concern, loaded once by the entry point."""

from fieldstream.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
