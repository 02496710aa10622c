"""Component ``gate``: champion/challenger on the system eval's end-to-end hmean."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate(result: Input[Artifact], margin: float, decision: Output[Metrics]) -> bool:
    """True when there is no production model or the candidate beats it by ``margin``."""
    from components._kfp_io import read_info
    from components._steps import gate_decision

    res = read_info(result)["results"]
    champion = res["production"]["hmean"] if res.get("production") else None
    publish, why = gate_decision(res["candidate"]["hmean"], champion, margin)
    decision.log_metric("publish", float(publish))
    print(why)
    return publish
