"""The model registry: the gate's decision, publish, the production pointer, and the dataset a
published model was trained on.

The registry lives under ``<registry_uri>/models/<name>/``: one prefix per published version
(``<version>/{det,rec}/``) and the pointer object ``production`` (``{"name", "version", "parts",
"metrics", "data"}``).

The gate is champion/challenger on the system eval's end-to-end hmean. The champion is the
production model when one exists; otherwise the model the run started from
(``det_pretrained_uri`` + ``rec_pretrained_uri``, exported and system-evaluated exactly like the
candidate); otherwise (training from scratch) there is none and the candidate is published on its
own. So a run never publishes a model worse than the one it started from.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from components.steps.common import content_key, log, scratch
from ocr_core.storage.client import open_store
from ocr_core.storage.manifest import read_manifest, sync_down, sync_up
from ocr_core.storage.uri import StorageError, join_uri

POINTER = "production"
DATA_KEY = "data"  # pointer field: {"uri", "digest"} of the raw dataset the production model was trained on
CHAMPIONS = ("production", "start", "none")


# ------------------------------------------------------------------------------------ the gate
@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, with the numbers it decided on (also the KFP Metrics)."""

    publish: bool
    champion: str  # production | start | none
    candidate_hmean: float
    champion_hmean: float | None
    required_margin: float
    reason: str

    @property
    def margin(self) -> float | None:
        """Observed gain of the candidate over the champion (None without a champion)."""
        return None if self.champion_hmean is None else self.candidate_hmean - self.champion_hmean

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "margin": self.margin}


def gate_decision(candidate: float, production: float | None, start: float | None = None,
                  margin: float = 0.0) -> GateDecision:
    """Publish when ``candidate >= champion + margin``; the champion is production, else start, else none.

    Args:
        candidate: End-to-end hmean of the candidate (det+rec) pair.
        production: The production pair's hmean on the same split (None: nothing in production).
        start: The start pair's hmean (None: trained from scratch, no start model).
        margin: Required gain over the champion (``gate_margin``).
    """
    if production is not None:
        champion, value, who = "production", production, "production"
    elif start is not None:
        champion, value, who = "start", start, "the start model (no production model yet)"
    else:
        return GateDecision(True, "none", candidate, None, margin,
                            f"no production model and no start model (trained from scratch): publish the candidate "
                            f"({candidate:.4f}) on its own")
    gain = candidate - value
    if candidate >= value + margin:
        why = (f"candidate {candidate:.4f} >= {who} {value:.4f} + margin {margin:g} "
               f"(gain {gain:+.4f}): publish")
        return GateDecision(True, champion, candidate, value, margin, why)
    why = (f"candidate {candidate:.4f} < {who} {value:.4f} + margin {margin:g} (gain {gain:+.4f}): "
           f"keep the {'production model' if champion == 'production' else 'start model; nothing is published'}")
    return GateDecision(False, champion, candidate, value, margin, why)


def decide(results: Mapping[str, Mapping[str, float] | None], margin: float) -> GateDecision:
    """:func:`gate_decision` on a system eval result (``{"candidate", "production", "start"}``)."""

    def hmean(label: str) -> float | None:
        r = results.get(label)
        return None if not r else float(r["hmean"])

    cand = hmean("candidate")
    if cand is None:
        raise ValueError("system eval result has no candidate")
    return gate_decision(cand, hmean("production"), hmean("start"), margin)


def decision_markdown(d: GateDecision, results: Mapping[str, Any] | None = None) -> str:
    """The gate's Markdown artifact: the decision, both numbers and the margin."""
    verdict = "**publish**" if d.publish else "**keep the champion** (nothing published)"

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    lines = [f"## Gate: {verdict}", "", d.reason, "",
             "| | end-to-end hmean |", "|---|---|",
             f"| candidate | {f(d.candidate_hmean)} |",
             f"| champion ({d.champion}) | {f(d.champion_hmean)} |",
             f"| margin (candidate - champion) | {'-' if d.margin is None else f'{d.margin:+.4f}'} |",
             f"| required margin (gate_margin) | {d.required_margin:g} |", ""]
    start = (results or {}).get("start_parts")
    if d.champion == "start" and start:
        lines.append("Start pair: " + ", ".join(f"{k} = {v}" for k, v in start.items()) + "\n")
    return "\n".join(lines)


def start_pair(candidate: dict[str, str], start: dict[str, str]) -> tuple[dict[str, str], dict[str, str]] | None:
    """The pair the run started from: each part's start model, or the candidate's part when that part
    was trained from scratch; None when both were (no start model at all).

    Returns ``(part -> URI, part -> "start" | "candidate")``.
    """
    if not any(start.values()):
        return None
    uris = {p: start.get(p) or candidate[p] for p in candidate}
    return uris, {p: "start" if start.get(p) else "candidate (trained from scratch)" for p in candidate}


# ---------------------------------------------------------------------- the production pointer
def production_pointer(registry_uri: str, name: str) -> dict[str, Any] | None:
    """The ``models/<name>/production`` pointer object, or None when nothing is in production."""
    store = open_store(registry_uri)
    uri = join_uri(registry_uri, "models", name, POINTER)
    try:
        return json.loads(store.get_bytes(uri))
    except StorageError as exc:
        if exc.code in ("NoSuchKey", "NotFound", "NoSuchBucket"):
            return None
        raise


def _write_pointer(registry_uri: str, name: str, pointer: Mapping[str, Any]) -> None:
    open_store(registry_uri).put_bytes(json.dumps(pointer, indent=1).encode(),
                                       join_uri(registry_uri, "models", name, POINTER), "application/json")


def production_data_digest(pointer: Mapping[str, Any] | None) -> str:
    """The dataset digest recorded in a production pointer ("" when none is recorded)."""
    return str(((pointer or {}).get(DATA_KEY) or {}).get("digest") or "")


def pointer_fingerprint(pointer: Mapping[str, Any] | None) -> str:
    """Identifies one write of the pointer (``publish`` rewrites it): "" when there is none."""
    return content_key(dict(pointer)) if pointer is not None else ""


def publish(models: Mapping[str, str], registry_uri: str, name: str, version: str,
            metrics: Mapping[str, Any], data: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Copy each model prefix to ``models/<name>/<version>/<part>/``, then move the pointer.

    ``data`` (``{"uri", "digest"}`` of the raw dataset manifest the models were trained on) is
    recorded in the pointer: ``check_new_data`` compares incoming data against it.
    """
    work = scratch("publish")
    parts = {}
    for part, uri in models.items():
        sync_down(uri, work / part, quiet=True)
        (work / part / "manifest.json").unlink(missing_ok=True)
        m = sync_up(work / part, join_uri(registry_uri, "models", name, version, part), kind="published-model",
                    quiet=True, extra={**read_manifest(uri).extra, "source": uri})
        parts[part] = {"uri": m.prefix, "digest": m.digest()}
    pointer = {"name": name, "version": version, "parts": parts, "metrics": dict(metrics)}
    if data:
        pointer[DATA_KEY] = {"uri": str(data.get("uri", "")), "digest": str(data["digest"])}
    _write_pointer(registry_uri, name, pointer)
    shutil.rmtree(work, ignore_errors=True)
    return pointer


def record_trained_data(registry_uri: str, name: str, data_uri: str, data_digest: str,
                        seen_fingerprint: str) -> bool:
    """After a retraining run: when the pointer is not the one ``check_new_data`` saw (this run
    published), record the dataset it was trained on in it. False when the gate kept the champion."""
    pointer = production_pointer(registry_uri, name)
    if pointer is None or pointer_fingerprint(pointer) == seen_fingerprint:
        log.info("production pointer unchanged: nothing published by this run")
        return False
    pointer[DATA_KEY] = {"uri": data_uri, "digest": data_digest}
    _write_pointer(registry_uri, name, pointer)
    log.info("production %s: recorded dataset %s", pointer.get("version"), data_digest[:12])
    return True
