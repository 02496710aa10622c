"""Component ``gate``: champion/challenger on the system eval's end-to-end hmean (``components/steps/registry.py``)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate(result: Input[Artifact], margin: float, decision: Output[Metrics], report: Output[Markdown]) -> bool:
    """True when the candidate beats the champion (production, else the start model) by ``margin``.

    Metrics: ``candidate_hmean``, ``champion_hmean``, ``margin`` (candidate - champion),
    ``required_margin``, ``publish`` (0/1) and ``champion`` (production | start | none).
    """
    from components._kfp_io import read_info
    from components.steps.registry import decide, decision_markdown

    res = read_info(result)
    d = decide(res["results"], margin)
    decision.log_metric("candidate_hmean", d.candidate_hmean)
    if d.champion_hmean is not None:
        decision.log_metric("champion_hmean", d.champion_hmean)
        decision.log_metric("margin", float(d.margin or 0.0))
    decision.log_metric("required_margin", float(margin))
    decision.log_metric("publish", float(d.publish))
    decision.metadata["champion"] = d.champion
    decision.metadata["reason"] = d.reason
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(decision_markdown(d, res))
    print(d.reason)
    return d.publish
