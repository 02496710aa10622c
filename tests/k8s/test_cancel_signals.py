"""The launcher's wait keeps a cancel even when the exception its signal handler raised was dropped."""

from __future__ import annotations

import os
import signal

import pytest

from components.launcher.client import PyTorchJobCancelled, _CancelSignals


@pytest.mark.parametrize("sig, exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, PyTorchJobCancelled)])
def test_a_swallowed_cancel_is_raised_again(sig, exc):
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job of a non-interactive shell
        pytest.skip("SIGINT is ignored in this process (started in the background): the wait keeps it so")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with _CancelSignals() as cancel:
        cancel.check()  # nothing received: no-op
        try:  # the handler's raise, dropped as "Exception ignored in ..." when it lands in a finalizer
            os.kill(os.getpid(), sig)
        except exc:
            pass
        with pytest.raises(exc):
            cancel.check()  # what the wait loop calls after every watch event and call
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _CancelSignals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)
