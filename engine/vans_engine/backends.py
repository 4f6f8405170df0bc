"""Inference backends behind one call signature: named numpy arrays in, named numpy arrays out.

Every exported graph (VDM denoiser, IDM chunk head, caption encoder) runs through a runner:

* :class:`TorchRunner` calls the PyTorch module (CPU or CUDA; optional bf16, ``torch.compile`` and
  CUDA graphs for the fixed-shape graphs on a GPU);
* :class:`OnnxRuntimeRunner` runs ``model.onnx`` with ONNX Runtime (the CPU default);
* :class:`TensorRTRunner` builds a TensorRT engine from the same ONNX file with the TensorRT Python
  API, caches it as ``*.plan`` beside it, and runs it on CUDA (Jetson, workstation GPUs).

Runners take and give numpy arrays keyed by the graph's input and output names, so the planner
does not know which one it drives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def check_backend(backend: str, device: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if backend == "tensorrt" and not device.startswith("cuda"):
        raise ValueError("the tensorrt backend needs device='cuda'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")


class TorchRunner:
    """Run a PyTorch callable on named inputs.

    Args:
        fn (`Callable[..., torch.Tensor | tuple]`): takes the inputs as keyword tensors.
        output_names (`list[str]`): names of the outputs, in order.
        device (`str`): where the inputs are moved.
        dtype (`torch.dtype`, *optional*): cast floating inputs (bf16 on a GPU); outputs come back float32.
    """

    def __init__(self, fn: Callable, output_names: list[str], device: str = "cpu", dtype: torch.dtype | None = None):
        self.fn = fn
        self.output_names = list(output_names)
        self.device = torch.device(device)
        self.dtype = dtype

    def _tensor(self, value: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
        if self.dtype is not None and t.is_floating_point():
            t = t.to(self.dtype)
        return t

    @torch.no_grad()
    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        out = self.fn(**{k: self._tensor(v) for k, v in inputs.items()})
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {name: o.float().cpu().numpy() for name, o in zip(self.output_names, out)}


def ort_session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or int(os.environ.get("VANS_ORT_THREADS", "0")) or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # ONNX Runtime's workers spin after each run by default; between our runs PyTorch decodes the
    # caption on the same cores, and spinning workers would starve it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeRunner:
    """Run an ONNX file with ONNX Runtime.

    Args:
        path (`str | Path`): the ``model.onnx`` file.
        provider (`str`, defaults to `"CPUExecutionProvider"`): ONNX Runtime execution provider.
        threads (`int`, *optional*): intra-op threads; all cores by default.
    """

    def __init__(self, path: str | Path, provider: str = "CPUExecutionProvider", threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"ONNX file not found: {self.path}")
        self.session = ort.InferenceSession(str(self.path), ort_session_options(threads), providers=[provider])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {sorted(missing)}")
        feed = {k: np.ascontiguousarray(inputs[k]) for k in self.input_names}
        return dict(zip(self.output_names, self.session.run(None, feed)))


def tensorrt_available() -> tuple[bool, str]:
    """Whether TensorRT can run here, and why not when it cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt Python package is not installed (it is not on PyPI for this platform)"
    if not torch.cuda.is_available():
        return False, "TensorRT needs a CUDA device and torch sees none"
    return True, ""


class TensorRTRunner:
    """Build (or load) a TensorRT engine from an ONNX file and run it on CUDA tensors.

    Args:
        onnx_path (`str | Path`): the ONNX file the engine is built from.
        engine_file_path (`str | Path`, *optional*): where the serialized engine is cached; the
            ONNX path with ``.plan`` by default.
        force_engine_update (`bool`, defaults to False): rebuild even when a cached engine exists.
        enable_fp16 (`bool`, defaults to True): let TensorRT pick fp16 kernels.
        input_shapes (`dict[str, tuple[int, ...]]`, *optional*): fixed shapes for inputs with
            dynamic axes (min = opt = max). By default a dynamic axis gets the profile
            1 (min), 1 (opt), ``max_batch_size`` (max).
        max_batch_size (`int`, defaults to 64): largest batch of the default profile.
    """

    def __init__(self, onnx_path: str | Path, engine_file_path: str | Path | None = None,
                 force_engine_update: bool = False, enable_fp16: bool = True,
                 input_shapes: dict[str, tuple[int, ...]] | None = None, max_batch_size: int = 64):
        ok, why = tensorrt_available()
        if not ok:
            raise RuntimeError(f"TensorRT backend unavailable: {why}")
        import tensorrt as trt

        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        onnx_path = Path(onnx_path)
        engine_path = Path(engine_file_path) if engine_file_path else onnx_path.with_suffix(".plan")
        if force_engine_update or not engine_path.exists():
            engine_path.write_bytes(self._build(onnx_path, enable_fp16, input_shapes or {}, max_batch_size))
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine; rebuild it "
                               "with force_engine_update=True")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()

    def _build(self, onnx_path: Path, enable_fp16: bool, input_shapes: dict[str, tuple[int, ...]],
               max_batch_size: int) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX file: {errors}")
        config = builder.create_builder_config()
        if enable_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if tensor.name in input_shapes:
                shape = tuple(input_shapes[tensor.name])
                profile.set_shape(tensor.name, shape, shape, shape)
            elif -1 in tuple(tensor.shape):
                dims = tuple(tensor.shape)
                profile.set_shape(tensor.name, tuple(1 if d == -1 else d for d in dims),
                                  tuple(1 if d == -1 else d for d in dims),
                                  tuple(max_batch_size if d == -1 else d for d in dims))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
        return bytes(serialized)

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        trt = self.trt
        device_inputs = {}
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).cuda()
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
            device_inputs[name] = t  # keep alive until the run ends
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            outputs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return {k: v.float().cpu().numpy() for k, v in outputs.items()}


class CudaGraphCallable:
    """Replay a fixed-shape CUDA computation as a CUDA graph, one graph per input shape.

    The first call with a new set of shapes warms the function up on a side stream, then captures
    it; later calls copy their inputs into the captured buffers and replay. This removes the kernel
    launch overhead that dominates small models on a large GPU. Outputs are the graph's own buffers:
    copy them before the next call if they must survive it.

    Args:
        fn (`Callable[..., torch.Tensor | tuple]`): takes keyword CUDA tensors.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], object]] = {}

    def __call__(self, **inputs: torch.Tensor):
        key = tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(inputs.items()))
        if key not in self.graphs:
            static = {k: v.clone() for k, v in inputs.items()}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.fn(**static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self.fn(**static)
            self.graphs[key] = (graph, static, out)
        graph, static, out = self.graphs[key]
        for k, v in inputs.items():
            static[k].copy_(v)
        graph.replay()
        return out
