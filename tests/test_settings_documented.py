"""Every HEADRACE_* setting of every package is documented for operators."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from guards.settings import GuardSettings
from learner.settings import LearnerSettings
from snapshots.settings import SigningSettings, SnapshotSettings
from stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


@pytest.mark.parametrize(
    "settings",
    [
        StreamSettings,
        LearnerSettings,
        ApiSettings,
        SnapshotSettings,
        SigningSettings,
        GuardSettings,
    ],
)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config.get("env_prefix", "")
    missing = [
        f"{prefix}{name}".upper()
        for name in settings.model_fields
        if f"{prefix}{name}".upper() not in DOCS
    ]
    assert missing == [], f"document these in README.md or docs/: {missing}"
