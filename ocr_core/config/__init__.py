"""PaddleOCR-style config: YAML + ``-o`` overrides + typed validation + resolution (model type, dictionary)."""

from ocr_core.config.loader import config_hash, dump_config, load_config, load_yaml, public_config
from ocr_core.config.resolve import load_charset, model_type_of, resolve_config, wire_rec_heads
from ocr_core.config.schema import GlobalConfig, parse_global, validate_config

__all__ = [
    "GlobalConfig",
    "config_hash",
    "dump_config",
    "load_charset",
    "load_config",
    "load_yaml",
    "model_type_of",
    "parse_global",
    "public_config",
    "resolve_config",
    "validate_config",
    "wire_rec_heads",
]
