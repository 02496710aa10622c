"""The publish gate: champion/challenger on the system eval's end-to-end hmean.

The champion is the production model when one exists; otherwise the model the run started from
(``det_pretrained_uri`` + ``rec_pretrained_uri``, exported and system-evaluated exactly like the
candidate); otherwise (training from scratch) there is none and the candidate is published on its
own. So a run never publishes a model worse than the one it started from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

CHAMPIONS = ("production", "start", "none")


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
