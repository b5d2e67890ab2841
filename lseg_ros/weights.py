"""Safe checkpoint reading and strict state-dict loading.

Checkpoints are read without executing pickled code: ``.safetensors`` with safetensors,
``.pt/.pth/.ckpt/.bin`` with ``torch.load(weights_only=True)``. Nothing here ever falls
back to random weights: every failure raises :class:`WeightsError` naming what was tried.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from .config import SAFETENSORS_SUFFIXES, TORCH_SUFFIXES, looks_like_path  # noqa: F401  (re-exported)

HOW_TO_SUPPLY = ("Supply weights as a local file with pretrained:=/path/to/weights.safetensors "
                 "(or .pt/.pth/.ckpt), or use pretrained:=random explicitly for tests.")


class WeightsError(RuntimeError):
    """Weights were asked for and cannot be had; the message says what was tried."""


def read_checkpoint(path: str | os.PathLike) -> Dict[str, object]:
    """Read a checkpoint file into a dict without unpickling arbitrary objects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist. {HOW_TO_SUPPLY}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as error:  # safetensors raises several types
            raise WeightsError(f"cannot read safetensors file {str(path)!r}: {error}") from error
    if suffix in TORCH_SUFFIXES:
        data = _torch_load_weights_only(path)
        if not isinstance(data, Mapping):
            raise WeightsError(f"{str(path)!r} holds a {type(data).__name__}, not a state dict")
        return dict(data)
    raise WeightsError(f"unsupported weights file type {suffix!r} for {str(path)!r}; "
                       f"accepted: {', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}")


#: Modules whose classes appear in the metadata of training checkpoints (Lightning callbacks
#: keyed by class, hyper-parameter containers). They are replaced by inert placeholders --
#: never imported, never run -- so such checkpoints load with ``weights_only=True``.
METADATA_MODULE_PREFIXES = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "argparse.", "omegaconf.")


class _InertPlaceholder(dict):
    """Stands in for a checkpoint-metadata class: keeps dict items, ignores every other state."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def __setstate__(self, state) -> None:
        pass


def _placeholders(names) -> list:
    return [(type(name.rsplit(".", 1)[-1], (_InertPlaceholder,), {"__module__": name.rsplit(".", 1)[0]}), name)
            for name in names]


def _unsafe_globals(path: Path) -> list:
    """The names ("module.Name") the checkpoint's pickle references that torch.load(weights_only=True)
    does not allow: torch.serialization.get_unsafe_globals_in_checkpoint (torch 2.5+); before,
    the pickle's GLOBAL opcodes (the protocol torch.save writes) minus torch's allow-list. Only
    names the messages: the weights-only unpickler itself still refuses whatever is not allowed."""
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is not None:
        return scan(str(path))
    import pickletools
    import zipfile

    from torch._weights_only_unpickler import _get_allowed_globals

    if not zipfile.is_zipfile(path):
        raise ValueError("not a zip checkpoint of torch.save (legacy format unsupported)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(name.endswith("constants.pkl") for name in names):
            raise ValueError("the file is a TorchScript archive")
        pickle_name = next((name for name in names if name.endswith("data.pkl")), None)
        if pickle_name is None:
            raise ValueError("no data.pkl in the archive")
        data = archive.read(pickle_name)
    allowed = _get_allowed_globals()
    found = {str(arg).replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    return sorted(name for name in found if name not in allowed)


def _torch_load_weights_only(path: Path):
    try:
        unsafe = _unsafe_globals(path)
    except Exception as error:
        hint = ""
        if "torchscript" in str(error).lower():
            hint = (". TorchScript archives (such as OpenAI's original CLIP .pt releases) are not loaded: "
                    "they carry code. Convert once where the weights can be had, e.g. "
                    "model = open_clip.create_model('ViT-B-16-quickgelu', pretrained='openai'); "
                    "safetensors.torch.save_file(model.state_dict(), 'ViT-B-16-openai.safetensors'), "
                    "and load that file with model:=ViT-B-16-quickgelu")
        raise WeightsError(f"cannot read {str(path)!r} as a torch checkpoint: {_first_line(error)}{hint}") \
            from error
    code_globals = [name for name in unsafe if not name.startswith(METADATA_MODULE_PREFIXES)]
    if code_globals:
        raise WeightsError(
            f"refusing to load {str(path)!r}: its pickle references {', '.join(sorted(code_globals))}, which "
            "torch.load(weights_only=True) does not allow (unpickling them could run code). Save the "
            "state dict as .safetensors where the file came from, and load that.")
    if unsafe and not hasattr(torch.serialization, "safe_globals"):
        raise WeightsError(
            f"cannot load {str(path)!r} with torch {torch.__version__}: its pickle holds training metadata "
            f"({', '.join(sorted(unsafe))}), which torch.load(weights_only=True) reads only from torch 2.5 on "
            "(torch.serialization.safe_globals). Save the state dict as .safetensors, or use torch>=2.5.")
    try:
        if not unsafe:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        with torch.serialization.safe_globals(_placeholders(unsafe)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"refusing or unable to load {str(path)!r} with torch.load(weights_only=True): "
                           f"{_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def extract_state_dict(checkpoint: Mapping[str, object], prefix: str = "") -> Dict[str, torch.Tensor]:
    """The tensors of a plain state dict or of a Lightning-style ``{'state_dict': ...}``,
    with ``prefix`` stripped (keys without it are kept only when prefix is empty)."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise WeightsError("checkpoint 'state_dict' entry is not a mapping")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                ignore_missing: Optional[set] = None) -> None:
    """Load ``state_dict`` into ``module`` key for key; any missing, unexpected or
    mis-shaped key raises :class:`WeightsError` naming it."""
    ignore_missing = ignore_missing or set()
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict and k not in ignore_missing)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = sorted(k for k in expected if k in state_dict
                        and tuple(state_dict[k].shape) != tuple(expected[k].shape))
    problems = []
    if missing:
        problems.append(f"missing key(s) {_head(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s) {_head(unexpected)}")
    if mismatched:
        problems.append("shape mismatch for " + ", ".join(
            f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in mismatched[:5]))
    if problems:
        raise WeightsError(f"weights {source!r} do not match the model: " + "; ".join(problems)
                           + f". {HOW_TO_SUPPLY}")
    module.load_state_dict(dict(state_dict), strict=not ignore_missing)


def _head(keys, count: int = 8) -> str:
    shown = ", ".join(repr(k) for k in keys[:count])
    return shown + (f" and {len(keys) - count} more" if len(keys) > count else "")


def check_finite(module: nn.Module, source: str) -> None:
    """Raise :class:`WeightsError` naming the first tensor of ``module``'s state dict (the
    weights a file supplies: parameters and persistent buffers; masks such as CLIP's causal
    ``attn_mask`` hold -inf by design and are not in it) that holds NaN or infinity. Such
    weights load, then give all-zero masks and NaN confidences."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(f"weights {source!r}: tensor {name!r} {tuple(tensor.shape)} holds {bad} "
                               f"NaN or infinite value(s); the file is damaged or was saved from a "
                               f"diverged training run. {HOW_TO_SUPPLY}")
