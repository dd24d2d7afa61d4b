"""``common.native.LoadOnce``: the load-once, fall-back-with-a-reason logic both backends'
C++ kernels share (``pytorch_impl/native.py``, ``gluon_impl/native.py``)."""

from __future__ import annotations

import threading
import warnings

import pytest

from common.native import LoadOnce


def counting(result=None, error=None):
    calls = []

    def load():
        calls.append(1)
        if error:
            raise RuntimeError(error)
        return result

    return load, calls


def test_loads_once_and_keeps_the_value(monkeypatch):
    monkeypatch.delenv("FACELOSSES_FUSED", raising=False)
    load, calls = counting(result="lib")
    once = LoadOnce(load, "kernels", "plain ops")
    threads = [threading.Thread(target=once.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert once.get() == "lib" and len(calls) == 1 and once.reason == ""


def test_a_failure_warns_once_with_the_reason_and_falls_back(monkeypatch):
    monkeypatch.delenv("FACELOSSES_FUSED", raising=False)
    load, calls = counting(error="no compiler ('g++' not found; set CXX)")
    once = LoadOnce(load, "kernels", "plain ops")
    with pytest.warns(RuntimeWarning, match=r"kernels unavailable, using plain ops: no compiler"):
        assert once.get() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert once.get() is None
    assert len(calls) == 1 and "g++" in once.reason


def test_FACELOSSES_FUSED_0_skips_the_load_without_a_warning(monkeypatch):
    monkeypatch.setenv("FACELOSSES_FUSED", "0")
    load, calls = counting(result="lib")
    once = LoadOnce(load, "kernels", "plain ops")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert once.get() is None
    assert calls == [] and "FACELOSSES_FUSED=0" in once.reason


def test_quiet_reasons_and_reset(monkeypatch):
    monkeypatch.delenv("FACELOSSES_FUSED", raising=False)
    load, calls = counting(error="off by default where MXNet sees a GPU")
    once = LoadOnce(load, "kernels", "plain ops", quiet=lambda reason: "GPU" in reason)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert once.get() is None
    once.reset()
    assert not once.done and once.reason == ""
    assert once.get() is None and len(calls) == 2
