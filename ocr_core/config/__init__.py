"""PaddleOCR-style config: YAML + ``-o`` overrides + typed validation."""

from ocr_core.config.loader import config_hash, dump_config, load_config, load_yaml, public_config
from ocr_core.config.schema import GlobalConfig, parse_global, validate_config

__all__ = [
    "GlobalConfig",
    "config_hash",
    "dump_config",
    "load_config",
    "load_yaml",
    "parse_global",
    "public_config",
    "validate_config",
]
