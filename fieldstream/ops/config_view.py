"""Every setting as its environment variable, secrets masked: the effective values
(`fieldstream config show`) and the reference of defaults and meanings (`fieldstream config
reference`, docs/SETTINGS.md)."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from fieldstream.config import Settings
from fieldstream.config.settings import SECTIONS, env_name
from fieldstream.ops.redact import MASK, mask_url

# Defence in depth: a secret someone declared as a plain str is still masked by its name.
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_?key)", re.I)


@dataclass(frozen=True)
class SettingRow:
    variable: str
    value: str  # what the program uses, as text; secrets masked; "" when unset
    source: Literal["default", "set"]
    secret: bool


def rows(settings: Settings) -> list[SettingRow]:
    out = []
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        cls = type(section)
        for name, info in cls.model_fields.items():
            value = getattr(section, name)
            default = info.get_default(call_default_factory=True)
            secret = _secret(name, info, value)
            out.append(SettingRow(
                variable=env_name(cls, name),
                value=_text(value, secret),
                source="default" if _same(value, default) else "set",
                secret=secret,
            ))
    return out


def reference() -> str:
    """Every setting with its default and what it does, as Markdown, section by section."""
    lines = [
        "# Settings",
        "",
        "Every setting fieldstream reads, from the environment or a `.env` file in the working",
        "directory. `fieldstream config show` prints the values in effect. This file is the output",
        "of `fieldstream config reference`; a unit test keeps the two the same.",
    ]
    for cls in SECTIONS.values():
        module_doc = sys.modules[cls.__module__].__doc__ or cls.__name__
        lines += ["", f"## {module_doc.strip().splitlines()[0].rstrip('.')}", "",
                  "| variable | default | what it does |", "|---|---|---|"]
        for name, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True)
            text = _text(default, _secret(name, info, default))
            shown = f"`{text}`" if text else "(none)"
            lines.append(f"| `{env_name(cls, name)}` | {shown.replace('|', '&#124;')} | {info.description or ''} |")
    return "\n".join(lines) + "\n"


def _secret(name: str, info: FieldInfo, value: Any) -> bool:
    return isinstance(value, SecretStr) or info.annotation is SecretStr or bool(_SECRET_NAME.search(name))


def _text(value: Any, secret: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if secret:
        return MASK if str(value) else ""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Path, timedelta)):  # a timedelta as it is written: '90 days, 0:00:00'
        return str(value)
    return json.dumps(_plain(value), default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, SecretStr) and isinstance(default, SecretStr):
        return value.get_secret_value() == default.get_secret_value()
    try:
        return bool(_plain(value) == _plain(default))
    except Exception:  # noqa: BLE001 - an uncomparable value is simply reported as set
        return False
