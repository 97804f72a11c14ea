"""Runtimes that turn a batch of ``uint8 (n, S, S, 3)`` crops into ``float32 (n, dim)`` features.

* ``onnxruntime``: the CPU default (several times faster than eager PyTorch on CPU); the torch
  backbone is exported once (``onnx_cache``) with normalisation inside the graph.
* ``torch``: the GPU default (bf16/fp16 autocast, channels-last, pinned memory, non-blocking
  copies, batch halved on out-of-memory); on CPU in fp32 it is the eager reference.

Every runtime offers ``submit(pixels) -> handle`` and ``collect(handle) -> features`` so the
runner can queue the next batch before waiting for the previous one, and ``provenance``: facts
for the store's provenance that the request alone does not tell; ``torch`` also offers
``submit_stored(images)`` for uncropped images it resizes on its device (readers
``device-resize`` and ``device-decode``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from featurestore.backbones import Backbone, Preprocessing, ResolvedWeights, WeightsCorrupt
from featurestore.errors import InvalidName, InvalidOption, first_line
from featurestore.extract.onnx_cache import INPUT_NAME, exported_onnx
from featurestore.registry import Registry, alternatives

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def cpu_threads() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class HalvingBatches:
    """Run a function over a batch in chunks of at most ``limit`` rows, halving ``limit`` on OOM."""

    def __init__(self, limit: int, errors: tuple[type[BaseException], ...], on_oom: Callable[[], None] = lambda: None):
        self.limit = limit
        self.errors = errors
        self.on_oom = on_oom

    def __call__(self, run: Callable[[np.ndarray], object], pixels: np.ndarray) -> list:
        results, start = [], 0
        while start < len(pixels):
            n = min(self.limit, len(pixels) - start)
            try:
                results.append(run(pixels[start:start + n]))
            except self.errors:
                if n == 1:
                    raise
                self.on_oom()
                self.limit = max(1, n // 2)
                log.warning("out of memory at batch %d; going on with batch %d", n, self.limit)
                continue
            start += n
        return results


#: Concurrent runs of one CPU session, each on its share of the threads. A parallel step waits
#: for its slowest thread, so when a decoding thread takes a core, one run on every thread stalls
#: as a whole while two runs side by side lose only that core's share: on this 2-core machine,
#: JPEGs end to end 87 images/s with two one-thread runs, 76 with one two-thread run (the model
#: alone: the same speed either way).
CPU_STREAMS = 2


class OnnxRunner:
    """onnxruntime session over an exported backbone (uint8 input) or a user's ONNX file; on CPU
    each batch is split over ``streams`` concurrent runs (default ``CPU_STREAMS``)."""

    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, path, input_name: str, preprocessing: Preprocessing, feed: str = "uint8",
                 threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",),
                 streams: int | None = None):
        import onnxruntime as ort

        threads = threads or cpu_threads()
        self.streams = min(streams or CPU_STREAMS, threads)
        self.pool = ThreadPoolExecutor(self.streams, thread_name_prefix="featurestore-onnx") if self.streams > 1 else None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads // self.streams
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle compute threads would spin and starve the decoding threads that feed them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = set(ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=[p for p in providers if p in available])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise WeightsCorrupt(f"{path}: onnxruntime cannot load this model ({first_line(error)[:200]}); export it again") from None
        self.input_name = input_name
        self.preprocessing = preprocessing
        self.feed = feed

    @property
    def on_cuda(self) -> bool:
        """Whether the session runs on CUDA's execution provider (the CPU-only wheel never does)."""
        return "CUDAExecutionProvider" in self.session.get_providers()

    @property
    def provenance(self) -> dict:
        """The execution providers the session runs on, and ``device`` cpu when CUDA's is not among
        them: the store then records where its rows were computed, not the device asked for."""
        return {"onnxruntime_providers": self.session.get_providers(), **({} if self.on_cuda else {"device": "cpu"})}

    def _input(self, pixels: np.ndarray) -> np.ndarray:
        if self.feed == "uint8":
            return np.ascontiguousarray(pixels)
        normalised = self.preprocessing.normalize(pixels)
        return normalised if self.feed == "NCHW" else np.ascontiguousarray(normalised.transpose(0, 2, 3, 1))

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: self._input(pixels)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(pixels), -1)

    def submit(self, pixels: np.ndarray):
        """Start the model on ``pixels``; ``collect`` gives the features."""
        if self.pool is None:
            return self._run(pixels)
        bounds = np.linspace(0, len(pixels), self.streams + 1).astype(int)
        return [self.pool.submit(self._run, pixels[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def collect(self, handle) -> np.ndarray:
        if isinstance(handle, list):
            return np.concatenate([future.result() for future in handle])
        return handle

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(pixels))


class TorchRunner:
    """A ``FeatureNet`` on a torch device; on CUDA with autocast, channels-last and pinned copies."""

    name = "torch"

    def __init__(self, net, device: str = "cpu", precision: str = "fp32", max_batch: int = 256):
        import torch

        _check_precision(precision)
        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.precision = precision
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        if self.cuda:
            # Batches keep one shape, so the convolution algorithms cuDNN benchmarks once are reused.
            torch.backends.cudnn.benchmark = True
        memory_format = torch.channels_last if self.cuda else torch.preserve_format
        self.net = net.to(self.device, memory_format=memory_format).eval()
        oom = (torch.cuda.OutOfMemoryError,) if self.cuda else ()
        self.batches = HalvingBatches(max_batch, oom, on_oom=torch.cuda.empty_cache)

    @property
    def provenance(self) -> dict:
        """Nothing beyond the request: torch runs on the device asked for or fails."""
        return {}

    def _launch(self, pixels: np.ndarray | list, stored: bool = False):
        torch = self.torch
        if isinstance(pixels, list):
            x = pixels  # images the reader decoded on this device already (reader device-decode)
        else:
            x = torch.from_numpy(np.ascontiguousarray(pixels))
            if self.cuda:
                # Pinned host memory lets the copy run asynchronously, overlapping the previous
                # batch; the process reader hands over batches it has pinned already.
                x = (x if x.is_pinned() else x.pin_memory()).to(self.device, non_blocking=True)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                                    enabled=self.amp_dtype is not None):
            out = self.net.forward_stored(x) if stored else self.net(x)
        if not self.cuda:
            return out, None
        host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(out, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    def submit(self, pixels: np.ndarray) -> list:
        return self.batches(self._launch, pixels)

    def submit_stored(self, images: np.ndarray | list) -> list:
        """``submit`` for images as stored or decoded on the device (see ``FeatureNet.forward_stored``);
        the net resizes and crops them on its device."""
        return self.batches(lambda chunk: self._launch(chunk, stored=True), images)

    def collect(self, handle: list) -> np.ndarray:
        parts = []
        for out, done in handle:
            if done is not None:
                done.synchronize()
            parts.append(out.numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(pixels))


@dataclass(frozen=True)
class RuntimeRequest:
    """What a runtime needs: the backbone, its resolved weights and layer, and where to run."""

    backbone: Backbone
    weights: ResolvedWeights
    layer: str
    device: str = "cpu"
    precision: str | None = None
    threads: int | None = None
    max_batch: int = 256
    root: object = None


def _onnxruntime(request: RuntimeRequest) -> OnnxRunner:
    on_gpu = request.device.startswith("cuda")
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if on_gpu else ("CPUExecutionProvider",)
    streams = 1 if on_gpu else None  # a GPU runs one batch at a time anyway
    backbone = request.backbone
    if backbone.is_torch:
        runner = _exported_runner(request, providers, streams)
    else:
        runner = OnnxRunner(request.weights.path, backbone.onnx_input["name"], backbone.preprocessing,
                            backbone.onnx_input.get("layout", "NCHW"), request.threads, providers, streams)
    if on_gpu and not runner.on_cuda:
        # The pinned `onnxruntime` wheel is CPU-only: onnxruntime falls back to CPU without a word.
        torch_too = " (or drop --runtime onnxruntime: torch is the GPU default)" if backbone.is_torch else ""
        log.warning("%s runs on CPU, not %s: this onnxruntime has no CUDAExecutionProvider; install "
                    "onnxruntime-gpu in place of onnxruntime to run it on the GPU%s", backbone.name, request.device,
                    torch_too)
    return runner


def _exported_runner(request: RuntimeRequest, providers: Sequence[str], streams: int | None) -> OnnxRunner:
    """An ``OnnxRunner`` over the cached export of a torch backbone, exporting it on first use."""
    backbone = request.backbone
    load = partial(OnnxRunner, input_name=INPUT_NAME, preprocessing=backbone.preprocessing, feed="uint8",
                   threads=request.threads, providers=providers, streams=streams)
    path = exported_onnx(backbone, request.weights, request.layer, request.root)
    try:
        return load(path)
    except WeightsCorrupt:
        # The cache is featurestore's own: a damaged export (a crash while it was written, a full
        # disk) is replaced once rather than reported on every later run; a second failure is raised.
        log.warning("%s: onnxruntime cannot load this cached export; deleting it and exporting %s again",
                    path, backbone.name)
        path.unlink(missing_ok=True)
    return load(exported_onnx(backbone, request.weights, request.layer, request.root))


def _torch(request: RuntimeRequest) -> TorchRunner:
    from featurestore.extract.feature_net import FeatureNet

    backbone = request.backbone
    if request.threads and not request.device.startswith("cuda"):
        import torch

        torch.set_num_threads(request.threads)
    net = FeatureNet(backbone.load_torch(request.weights, request.layer), backbone.preprocessing)
    return TorchRunner(net, request.device, request.precision, request.max_batch)


def device_kind(device: str) -> str:
    """``cuda`` for any CUDA device (``cuda:1``), else ``cpu``: what runtime and reader defaults go by."""
    return "cuda" if device.startswith("cuda") else "cpu"


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime's registry entry: how to build it from a ``RuntimeRequest`` and what it can do."""

    build: Callable[[RuntimeRequest], object]
    #: what ``--precision`` may ask of it
    precisions: tuple[str, ...] = ("fp32",)
    #: what it computes in on a GPU without ``--precision`` (on CPU: fp32)
    gpu_precision: str = "fp32"
    runs_torch_backbones: bool = True
    runs_onnx_files: bool = True
    #: whether it offers ``submit_stored``, resizing and cropping uncropped images on its device
    crops_on_device: bool = False
    #: device kinds (``device_kind``) it is the default on, for the backbones it runs
    default_on: tuple[str, ...] = ()

    def runs(self, backbone: Backbone) -> bool:
        """Whether it can run ``backbone``."""
        return self.runs_torch_backbones if backbone.is_torch else self.runs_onnx_files

    def default_precision(self, device: str) -> str:
        """The precision it computes in on ``device`` without ``--precision``."""
        return self.gpu_precision if device_kind(device) == "cuda" else "fp32"


#: The default for a backbone on a device is the first runtime registered as a default there that
#: runs it, so torch, the faster on a GPU, comes before onnxruntime, the default everywhere.
RUNTIMES: Registry[RuntimeSpec] = Registry("runtime")
RUNTIMES.register("torch", RuntimeSpec(_torch, precisions=PRECISIONS, gpu_precision="bf16", runs_onnx_files=False,
                                       crops_on_device=True, default_on=("cuda",)))
# onnxruntime runs the exported graph as it is, in fp32: any other precision would be ignored.
RUNTIMES.register("onnxruntime", RuntimeSpec(_onnxruntime, default_on=("cpu", "cuda")))


def default_runtime(backbone: Backbone, device: str) -> str:
    """The first runtime registered as a default on ``device``'s kind that runs ``backbone``: torch
    for torch backbones on a GPU, else onnxruntime (the fastest CPU path here)."""
    kind = device_kind(device)
    return next(name for name, spec in RUNTIMES.items() if kind in spec.default_on and spec.runs(backbone))


def effective_precision(backbone: Backbone, device: str | None, runtime: str | None = None,
                        precision: str | None = None) -> str:
    """The precision ``backbone``'s rows are computed in: ``precision`` if given (``check_options``
    refuses one its runtime cannot compute in), else its runtime's default on ``device``."""
    if precision:
        return precision
    return RUNTIMES.get(runtime or default_runtime(backbone, device)).default_precision(device)


def build_runtime(request: RuntimeRequest, runtime: str | None = None):
    """Load the model behind ``request`` into ``runtime`` (default: ``default_runtime``)."""
    name = runtime or default_runtime(request.backbone, request.device)
    spec = _check_runtime(request.backbone, name, request.precision)
    return spec.build(replace(request, precision=request.precision or spec.default_precision(request.device)))


def _check_precision(precision: str | None) -> None:
    if precision is not None and precision not in PRECISIONS:
        raise InvalidOption(f"--precision {precision}: not one of {', '.join(PRECISIONS)}; "
                            f"leave it out for the default of the runtime ({_default_precisions()})")


def _default_precisions() -> str:
    """Each runtime's precision without ``--precision``: ``torch: bf16 on GPU, fp32 on CPU; ...``."""
    said = []
    for name, spec in RUNTIMES.items():
        gpu, cpu = spec.default_precision("cuda"), spec.default_precision("cpu")
        said.append(f"{name}: {gpu} on GPU, {cpu} on CPU" if gpu != cpu else f"{name}: {cpu}")
    return "; ".join(said)


def _check_runtime(backbone: Backbone, name: str, precision: str | None) -> RuntimeSpec:
    """Runtime ``name``'s entry, or one line if it cannot run ``backbone`` at ``precision``."""
    spec = RUNTIMES.get(name)
    if not spec.runs(backbone):
        able = alternatives(repr(other) for other, entry in RUNTIMES.items() if entry.runs(backbone))
        kind = "a torch model" if backbone.is_torch else "an ONNX file"
        raise InvalidName(f"backbone {backbone.name!r} is {kind}; run it with runtime {able}")
    _check_precision(precision)
    if precision is not None and precision not in spec.precisions:
        able = [other for other, entry in RUNTIMES.items() if precision in entry.precisions and entry.runs(backbone)]
        fix = f"use --runtime {able[0]} or leave --precision out" if able else "leave --precision out"
        raise InvalidOption(f"--precision {precision}: {backbone.name} runs on {name} here, which computes in "
                            f"{alternatives(spec.precisions)} only; {fix}")
    return spec


def check_options(backbones: Sequence[Backbone], device: str, runtime: str | None = None,
                  precision: str | None = None, batch_size: int | None = None, workers: int | None = None,
                  threads: int | None = None) -> None:
    """Raise ``InvalidOption`` or ``InvalidName`` (one line) for an extract option that cannot work
    with ``backbones`` on the resolved ``device``; ``None`` stands for the default.

    ``extract`` calls it before planning, so a bad option fails even when every store is
    complete and nothing would run.
    """
    for flag, value in (("--batch-size", batch_size), ("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise InvalidOption(f"{flag} {value}: must be 1 or more; leave it out for the default")
    _check_precision(precision)
    for backbone in backbones:
        _check_runtime(backbone, runtime or default_runtime(backbone, device), precision)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; a GPU asked for must be there."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidName(f"device {device!r}: no CUDA GPU is visible to this process; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise InvalidName(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device
