"""What every pipeline step shares: content keys, scratch directories, config paths, manifests."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocr_core.errors import DataError
from ocr_core.storage.manifest import Manifest, sync_down

log = logging.getLogger("ocrflow.pipeline")

REPO_ROOT = Path(__file__).resolve().parents[2]


def content_key(*parts: Any) -> str:
    """sha256 over JSON-encoded ``parts``: the run id / cache key of a step (inputs -> key)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def manifest_info(m: Manifest) -> dict[str, Any]:
    """What a step hands to the next one: URI, digest, counts and the manifest's extra."""
    return {"uri": m.prefix, "digest": m.digest(), "kind": m.kind, "counts": dict(m.counts),
            "extra": dict(m.extra)}


def scratch(name: str) -> Path:
    """A fresh local working directory for one step (under ``$OCRFLOW_WORK_DIR`` when set)."""
    root = os.environ.get("OCRFLOW_WORK_DIR") or None
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"ocrflow-{name}-", dir=root))


def find_config_file(config: str) -> str:
    """A config path as given when it exists, else relative to the source tree (or image workdir)."""
    for cand in (Path(config), REPO_ROOT / config, Path("/opt/ocrflow") / config):
        if cand.is_file():
            return str(cand.resolve())
    raise DataError(f"config file not found: {config} (looked in ., {REPO_ROOT}, /opt/ocrflow)")


def config_digest(config: str, overrides: Sequence[str] = ()) -> str:
    """Hash of the resolved config (file + overrides), as ``ocr_core.config.config_hash``."""
    from ocr_core.config import config_hash, load_config

    return config_hash(load_config(find_config_file(config), list(overrides)))


def layered_config(source: str | os.PathLike[str] | Mapping[str, Any],
                   *layers: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """Load a config file (or copy a config dict) and apply ``layers`` in order, the last one winning.

    A mapping layer sets dotted keys to Python values (``{"Train.dataset.data_dir": "/stage/data"}``:
    paths, lists and numbers as they are, nothing parsed); a sequence layer is ``-o`` override
    strings (``["Global.epoch_num=3"]``), parsed as ``ocrflow train -o`` does. Errors name the key.
    The source file stays the config's ``Global._config_file`` (validation errors name it).
    """
    from ocr_core.config import load_config
    from ocr_core.config.loader import apply_override
    from ocr_core.errors import ConfigError

    if isinstance(source, Mapping):
        cfg = load_config(None, base=dict(source))
    else:
        cfg = load_config(source)
    src = cfg["Global"]["_config_file"]
    for layer in layers:
        if isinstance(layer, Mapping):
            for dotted, value in layer.items():
                try:
                    apply_override(cfg, dotted.split("."), value)
                except ConfigError as exc:
                    raise exc.with_file(f"{dotted}={value!r}") from None
        else:
            cfg = load_config(None, list(layer), base=cfg)
    cfg["Global"]["_config_file"] = src
    return cfg


def fetch_checkpoint(model_uri: str, dest: Path) -> Path:
    """Download a model prefix and return the local path of its checkpoint."""
    m = sync_down(model_uri, dest, quiet=True)
    return dest / str(m.extra.get("checkpoint") or "model.pt")
