"""Create a PyTorchJob, watch it to the end, stream the master's log, clean up on cancel.

Written against the bugs of the deleted upstream KFP ``pytorch-launcher`` sample:

* no undeclared arguments (the group/version/plural are constants of ``pytorchjob``);
* the *overall* ``timeout_s`` bounds the wait; each watch call only lasts ``watch_timeout_s``
  and is re-opened from the last resourceVersion until the deadline;
* only ``Succeeded`` is success: ``Failed`` raises :class:`PyTorchJobFailed`.

On timeout, ``KeyboardInterrupt`` or SIGTERM (a cancelled KFP step) the job is deleted before
the exception propagates, so no replica keeps holding GPUs.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from components.launcher.pytorchjob import CONTAINER_NAME, GROUP, PLURAL, VERSION, current_namespace
from components.launcher.validate import check_pytorchjob

JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
TERMINAL = ("Succeeded", "Failed")


class PyTorchJobError(RuntimeError):
    """The job could not be created or watched."""


class PyTorchJobFailed(PyTorchJobError):
    """The job reached ``Failed``: carries the condition and the failing pod's log tail."""

    def __init__(self, name: str, reason: str, message: str, pod: str | None, log_tail: list[str]) -> None:
        self.name, self.reason, self.message, self.pod, self.log_tail = name, reason, message, pod, log_tail
        text = f"PyTorchJob {name} failed: {reason}: {message}"
        if pod:
            text += f"\n--- last {len(log_tail)} log lines of pod {pod} ---\n" + "\n".join(log_tail)
        super().__init__(text)


class PyTorchJobTimeout(PyTorchJobError, TimeoutError):
    """The overall wait timeout passed; the job was deleted."""


class PyTorchJobCancelled(BaseException):
    """SIGTERM arrived while waiting (KFP cancelled the step); the job was deleted.

    A BaseException, like KeyboardInterrupt, so ``except Exception`` cannot swallow it.
    """


@dataclass
class JobResult:
    """How a job ended (only returned for ``Succeeded``)."""

    name: str
    namespace: str
    state: str
    conditions: list[dict[str, Any]]
    duration_s: float
    log_tail: list[str] = field(default_factory=list)


def api_client_from_env(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """In-cluster config when running in a pod (a KFP step), else the kubeconfig."""
    from kubernetes import config

    cfg = k8s.Configuration()
    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config(client_configuration=cfg)
            return k8s.ApiClient(cfg)
        except config.ConfigException:
            pass
    config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    return k8s.ApiClient(cfg)


def job_state(job: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(state, condition): a true terminal condition wins, else the last true condition."""
    conds = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for cond in conds:
        if cond.get("type") in TERMINAL:
            return cond["type"], cond
    return (conds[-1]["type"], conds[-1]) if conds else (None, None)


class _MasterLogPump(threading.Thread):
    """Follows the master pod's ``pytorch`` container log, again after each container restart."""

    def __init__(self, core: k8s.CoreV1Api, name: str, namespace: str, sink: Callable[[str], None],
                 poll_s: float, keep: int) -> None:
        super().__init__(name=f"logs-{name}", daemon=True)
        self.core, self.job, self.ns, self.sink, self.poll_s = core, name, namespace, sink, poll_s
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self.stop_event = threading.Event()
        self._resp: Any = None

    def stop(self) -> None:
        self.stop_event.set()
        resp = self._resp
        if resp is not None and hasattr(resp, "shutdown"):
            try:
                resp.shutdown()  # unblocks a read in progress (urllib3 >= 2.3)
            except Exception:  # noqa: BLE001 - best effort on an already closed stream
                pass

    def run(self) -> None:
        seen: set[tuple[str, int]] = set()
        selector = f"{JOB_NAME_LABEL}={self.job},{REPLICA_TYPE_LABEL}=master"
        while not self.stop_event.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.ns, label_selector=selector).items
            except Exception:  # noqa: BLE001 - transient API errors: try again next poll
                pods = []
            for pod in pods:
                key = (pod.metadata.uid or pod.metadata.name, _restart_count(pod))
                if key in seen or (pod.status.phase or "Pending") == "Pending":
                    continue
                try:
                    self._resp = self.core.read_namespaced_pod_log(
                        pod.metadata.name, self.ns, container=CONTAINER_NAME, follow=True,
                        _preload_content=False)
                except ApiException:
                    continue  # e.g. 400 "container is waiting to start": retry next poll
                seen.add(key)
                if key[1]:
                    self.sink(f"--- {pod.metadata.name}: container restarted ({key[1]}) ---")
                try:
                    for line in iter_resp_lines(self._resp):
                        self.tail.append(line)
                        self.sink(line)
                        if self.stop_event.is_set():
                            break
                except Exception:  # noqa: BLE001 - stream cut by stop() or pod deletion
                    pass
                finally:
                    self._resp.release_conn()
                    self._resp = None
            self.stop_event.wait(self.poll_s)


def _restart_count(pod: Any) -> int:
    for cs in pod.status.container_statuses or []:
        if cs.name == CONTAINER_NAME:
            return int(cs.restart_count or 0)
    return 0


def _failed_exit(pod: Any) -> tuple[bool, Any, bool]:
    """(failed?, finished_at, in the previous container?) of the pod's ``pytorch`` container."""
    for cs in pod.status.container_statuses or []:
        if cs.name != CONTAINER_NAME:
            continue
        for previous, state in ((False, cs.state), (True, cs.last_state)):
            term = state.terminated if state else None
            if term is not None and term.exit_code != 0:
                return True, term.finished_at, previous
    return pod.status.phase == "Failed", None, False


_ERROR_MARKERS = ("Traceback (most recent call last)", "Error:", "error:")


def failing_pod_tail(core: k8s.CoreV1Api, name: str, namespace: str, lines: int = 40) -> tuple[str | None, list[str]]:
    """The pod whose log explains the failure, and the tail of that log.

    Candidates are the job's failed pods, earliest failure first; the log read is the container that
    failed (the previous one when the pod has restarted since). The first candidate whose tail shows
    an error wins: a replica killed because its peer died fails too, but its log holds no cause.
    """
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
    except ApiException:
        return None, []
    failed = []
    for pod in pods:
        is_failed, when, previous = _failed_exit(pod)
        if is_failed:
            failed.append((when is None, when.timestamp() if when else 0.0, pod.metadata.name, previous))
    if not failed:
        return None, []
    tails = []
    for _, _, pod_name, previous in sorted(failed):
        tail = _pod_tail(core, pod_name, namespace, lines, (previous, not previous))
        if any(marker in line for line in tail for marker in _ERROR_MARKERS):
            return pod_name, tail
        tails.append((pod_name, tail))
    return tails[0]


def _pod_tail(core: k8s.CoreV1Api, pod_name: str, namespace: str, lines: int,
              order: tuple[bool, bool]) -> list[str]:
    """The last ``lines`` of the first non-empty log in ``order`` (``previous`` flags)."""
    for previous in order:
        try:
            text = core.read_namespaced_pod_log(pod_name, namespace, container=CONTAINER_NAME,
                                                tail_lines=lines, previous=previous)
        except ApiException:
            continue
        if text:
            return text.splitlines()[-lines:]
    return []


def delete_job(api: k8s.CustomObjectsApi, name: str, namespace: str) -> bool:
    """Delete the job (Foreground, so its pods go first); False when it was already gone."""
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                            body=k8s.V1DeleteOptions(propagation_policy="Foreground"))
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


class _CancelSignals:
    """SIGTERM -> :class:`PyTorchJobCancelled`, Ctrl-C -> ``KeyboardInterrupt`` while waiting (main thread only).

    Each handler records the signal before raising: an exception raised while the interpreter runs a
    finalizer (``__del__``, a weakref callback, a generator's close during GC) is reported as
    "ignored" and dropped, which loses a Ctrl-C. :meth:`check`, called by the wait loop after every
    watch event and watch call, raises it again, so a cancel is never lost (at worst it is late by
    one watch call). Any SIGINT handler in place (the default, or one a library left behind, which
    would take the Ctrl-C without raising) is replaced for the wait and restored after it; an
    ignored SIGINT stays ignored.
    """

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: int | None = None

    def __enter__(self) -> _CancelSignals:
        if threading.current_thread() is threading.main_thread():
            self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored (nohup, a daemon): stays so
                self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        self.check()

    def check(self) -> None:
        """Raise the cancel a signal asked for (again, if its first raise was swallowed)."""
        if self.received == signal.SIGTERM:
            raise PyTorchJobCancelled("SIGTERM received")
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()


def launch_and_wait(
    job: Mapping[str, Any],
    api_client: k8s.ApiClient | None = None,
    *,
    timeout_s: float = 24 * 3600,
    watch_timeout_s: float = 60,
    log_sink: Callable[[str], None] | None = print,
    poll_s: float = 2.0,
    tail_lines: int = 40,
    validate: bool = True,
) -> JobResult:
    """Create ``job``, wait for ``Succeeded`` and return a :class:`JobResult`.

    Args:
        job: A PyTorchJob manifest (see ``build_pytorchjob``).
        api_client: A configured ``kubernetes.client.ApiClient`` (default: from the environment).
        timeout_s: Overall limit for the whole run; past it the job is deleted.
        watch_timeout_s: Length of one watch call (server side); the wait re-watches after it.
        log_sink: Receives the master pod's log lines and state changes (None: silent).
        poll_s: Interval of the pod look-ups that start/resume log streaming.
        tail_lines: How many log lines a failure report carries.
        validate: Check the manifest offline (CRD schema + webhook rules) before creating it.

    Raises:
        PyTorchJobFailed: the job reached Failed (or was deleted by someone else).
        PyTorchJobTimeout: ``timeout_s`` passed (the job was deleted).
        PyTorchJobCancelled / KeyboardInterrupt: cancelled (the job was deleted).
    """
    if validate:
        check_pytorchjob(job)
    api_client = api_client or api_client_from_env()
    custom = k8s.CustomObjectsApi(api_client)
    core = k8s.CoreV1Api(api_client)
    # a hand-made job without a namespace goes where this pod runs, like a built one (#15 item 3)
    name, ns = job["metadata"]["name"], job["metadata"].get("namespace") or current_namespace()
    sink = log_sink or (lambda line: None)
    start = time.monotonic()
    deadline = start + timeout_s
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, dict(job))
    except ApiException as exc:
        raise PyTorchJobError(f"creating PyTorchJob {ns}/{name} failed: HTTP {exc.status}: {exc.body or exc.reason}") from exc
    sink(f"PyTorchJob {ns}/{name} created")
    pump = _MasterLogPump(core, name, ns, sink, poll_s, keep=tail_lines)
    pump.start()
    try:
        with _CancelSignals() as cancel:
            final = _wait_terminal(custom, name, ns, deadline, watch_timeout_s, sink, cancel.check)
    except (KeyboardInterrupt, PyTorchJobCancelled, PyTorchJobTimeout) as exc:
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if _main() else None
        try:
            pump.stop()
            deleted = delete_job(custom, name, ns)
            sink(f"PyTorchJob {ns}/{name} {'deleted' if deleted else 'already gone'} after {type(exc).__name__}")
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        raise
    finally:
        pump.stop()
        pump.join(timeout=5)
    state, cond = job_state(final)
    if state != "Succeeded":
        cond = cond or {}
        pod, tail = failing_pod_tail(core, name, ns, tail_lines)
        raise PyTorchJobFailed(name, cond.get("reason", state or "Unknown"), cond.get("message", ""), pod, tail)
    return JobResult(name, ns, state, list((final.get("status") or {}).get("conditions") or []),
                     time.monotonic() - start, list(pump.tail))


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


def _wait_terminal(custom: k8s.CustomObjectsApi, name: str, ns: str, deadline: float,
                   watch_timeout_s: float, sink: Callable[[str], None],
                   check_cancel: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Watch until a terminal condition; re-watch from the last resourceVersion until ``deadline``.

    ``check_cancel`` runs after every event and watch call and raises when the wait was cancelled.
    """
    resource_version: str | None = None
    last_state: str | None = None
    while True:
        check_cancel()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PyTorchJobTimeout(f"PyTorchJob {ns}/{name} did not finish within the timeout")
        if resource_version is None:  # (re)list: also covers a 410 Gone on an old resourceVersion
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
            resource_version = obj["metadata"].get("resourceVersion")
            last_state = _report(obj, last_state, sink)
            if last_state in TERMINAL:
                return obj
        w = k8s_watch.Watch()
        per_call = max(1, int(min(watch_timeout_s, remaining)))
        try:
            for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                                  field_selector=f"metadata.name={name}", resource_version=resource_version,
                                  timeout_seconds=per_call, _request_timeout=per_call + 10):
                check_cancel()
                obj = event["object"]
                resource_version = obj["metadata"].get("resourceVersion", resource_version)
                if event["type"] == "DELETED":
                    raise PyTorchJobFailed(name, "Deleted", "the PyTorchJob was deleted while running", None, [])
                last_state = _report(obj, last_state, sink)
                if last_state in TERMINAL:
                    w.stop()
                    return obj
                if time.monotonic() >= deadline:
                    w.stop()
                    break
        except ApiException as exc:
            if exc.status != 410:
                raise
            resource_version = None
        except Exception as exc:  # noqa: BLE001 - read timeouts / dropped connections: re-watch
            if isinstance(exc, PyTorchJobError):
                raise
            sink(f"watch of {ns}/{name} interrupted ({type(exc).__name__}); re-watching")


def _report(obj: Mapping[str, Any], last: str | None, sink: Callable[[str], None]) -> str | None:
    state, cond = job_state(obj)
    if state != last and cond is not None:
        sink(f"PyTorchJob {obj['metadata']['name']}: {state} ({cond.get('reason', '')}: {cond.get('message', '')})")
    return state
