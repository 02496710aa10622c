"""A fake ``tensorrt`` module for tests without a GPU: it "builds" an engine that runs the parsed ONNX
bytes with onnxruntime, on host memory addressed by the pointers TensorRT would get.

``FakeTensorRT(drift=d)`` adds ``d`` to every output of its engines (an engine that does not
reproduce the ONNX model). Use :func:`install` to make ``import tensorrt`` return it, report
TensorRT as available and put the engine's buffers on the CPU.
"""

from __future__ import annotations

import ctypes
import json
from types import SimpleNamespace
from typing import Any

import numpy as np

MAGIC = b"FAKE-TRT\n"


class FakeTensorRT:
    """The slice of the TensorRT Python API that ``tensorrt_build`` and ``tensorrt_parity`` use."""

    def __init__(self, drift: float = 0.0) -> None:
        self.drift = drift
        self.calls: list[tuple] = []
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                pass

        class Network:
            onnx = b""

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, list] = {}

            def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
                self.shapes[name] = [list(lo), list(opt), list(hi)]

        class Config:
            def __init__(self) -> None:
                self.profiles: list[Profile] = []
                self.flags: list[str] = []

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                pass

            def set_flag(self, flag: str) -> None:
                self.flags.append(flag)

            def add_optimization_profile(self, profile: Profile) -> None:
                self.profiles.append(profile)

        class Builder:
            platform_has_fast_fp16 = True

            def __init__(self, logger: Logger) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                header = {"drift": fake.drift, "profile": config.profiles[0].shapes, "flags": config.flags}
                fake.calls.append(("build", header))
                return MAGIC + json.dumps(header).encode() + b"\n" + network.onnx

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: Network, logger: Logger) -> None:
                self.network = network

            def parse(self, data: bytes) -> bool:
                self.network.onnx = data
                return True

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
                if not data.startswith(MAGIC):
                    return None
                header, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
                return FakeEngine(json.loads(header), onnx_bytes)

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = Logger, Builder, OnnxParser, Runtime
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = SimpleNamespace(FP16="FP16")
        self.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        self.DataType = SimpleNamespace(FLOAT="FLOAT", HALF="HALF")


class FakeEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.drift = float(header["drift"])
        self.profile = header["profile"]
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.num_io_tensors = len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i: int) -> str:
        return (self.inputs + self.outputs)[i]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name in self.inputs else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> str:
        return "FLOAT"

    def get_tensor_profile_shape(self, name: str, index: int) -> list[list[int]]:
        return self.profile[name]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.out_shapes: dict[str, tuple[int, ...]] = {}
        self.batches: list[int] = []

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        lo, _, hi = self.engine.profile[name]
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False  # as TensorRT (which also logs an error)
        self.shapes[name] = tuple(shape)
        outs = self.engine.session.run(None, {name: np.zeros(shape, np.float32)})
        self.out_shapes = {n: o.shape for n, o in zip(self.engine.outputs, outs)}
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.out_shapes[name]

    def execute_async_v3(self, stream: int) -> bool:
        (name, shape), = self.shapes.items()
        n = int(np.prod(shape))
        x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addresses[name])).reshape(shape).copy()
        self.batches.append(shape[0])
        for out_name, out in zip(self.engine.outputs, self.engine.session.run(None, {name: x})):
            out = np.ascontiguousarray(out + self.engine.drift, dtype=np.float32)
            ctypes.memmove(self.addresses[out_name], out.ctypes.data, out.nbytes)
        return True


def install(monkeypatch: Any, drift: float = 0.0) -> FakeTensorRT:
    """``import tensorrt`` -> a :class:`FakeTensorRT`; TensorRT reported available; CPU buffers."""
    import sys

    from ocr_core.export import tensorrt_build, tensorrt_parity

    fake = FakeTensorRT(drift)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_build, "tensorrt_available", lambda: (True, ""))
    monkeypatch.setattr(tensorrt_parity, "BUFFER_DEVICE", "cpu")
    return fake
