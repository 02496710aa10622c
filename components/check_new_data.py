"""Components ``check_new_data`` and ``record_trained_data``: gate a scheduled retraining run on new data.

``check_new_data`` compares the incoming raw dataset's manifest digest with the digest recorded in
the production pointer (``models/<name>/production``, field ``data``); ``record_trained_data``
writes that field after a retraining run published a new model.

``is_new`` is the component's return value (``outputs["Output"]``): kfp.local 2.17 resolves a
``dsl.If`` operand only when it is a task's ``Output`` (a named output reads as unresolved, and
the branch is silently skipped). The digests are named output parameters.
"""

from kfp import dsl
from kfp.dsl import Metrics, Output, OutputPath

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def check_new_data(raw_uri: str, registry_uri: str, model_name: str, decision: Output[Metrics],
                   incoming_digest: OutputPath(str), production_digest: OutputPath(str),
                   production_version: OutputPath(str), pointer_fingerprint: OutputPath(str)) -> bool:
    """True (``is_new``) when there is no production model or its recorded dataset digest differs."""
    from components.steps.data import check_new_data as check

    res = check(raw_uri, registry_uri, model_name)
    for path, key in ((incoming_digest, "incoming_digest"), (production_digest, "production_digest"),
                      (production_version, "production_version"), (pointer_fingerprint, "pointer_fingerprint")):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(res[key])
    decision.log_metric("is_new", float(res["is_new"]))
    print(res["reason"])
    return res["is_new"]


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def record_trained_data(registry_uri: str, model_name: str, data_uri: str, data_digest: str,
                        seen_fingerprint: str) -> bool:
    """Record ``data_digest`` in the production pointer when this run published it (else no-op)."""
    from components.steps.registry import record_trained_data as record

    return record(registry_uri, model_name, data_uri, data_digest, seen_fingerprint)
