"""Configs and ``-o`` overrides are data: a ``!!python`` tag runs nothing (docs/security.md).

The payload would create a marker file if PyYAML's unsafe constructors ran it; the file is then
refused with the file and line named, and an override carrying the tag stays a plain string.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_core.config.loader import load_config, load_yaml, parse_override
from ocr_core.errors import ConfigError


def _payload(marker: Path) -> str:
    # what yaml.unsafe_load would turn into a call creating ``marker``
    return f"!!python/object/apply:os.mkdir [{str(marker)!r}]"


def test_a_python_tag_in_a_config_file_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cfg = tmp_path / "evil.yml"
    cfg.write_text(f"Global:\n  epoch_num: 1\n  save_model_dir: {_payload(marker)}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_yaml(cfg)
    assert f"{cfg}:3" in str(err.value) and not marker.exists()
    with pytest.raises(ConfigError):
        load_config(cfg)
    assert not marker.exists()


def test_a_python_tag_in_an_override_is_a_plain_string(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    key, value = parse_override(f"Global.save_model_dir={_payload(marker)}")
    assert key == ["Global", "save_model_dir"] and value == _payload(marker) and not marker.exists()


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control: the same text under PyYAML's unsafe loader does run (so the tests above can fail)."""
    import yaml

    marker = tmp_path / "ran"
    yaml.unsafe_load(f"x: {_payload(marker)}\n")
    assert marker.is_dir()
