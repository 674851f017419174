"""Runs inside the sandbox: builds a student's network from their own code, loads their weights, predicts labels.

Standalone on purpose (standard library, numpy and torch only; never imports `grader`): it is copied into the
sandbox and run as `python harness.py JOB.json`. It writes exactly one JSON document to the result pipe
(`$GRADER_RESULT_FD`) and nothing else there:

    {"predictions": [int, ...], "trace": {...}, "info": {...}}      on success (exit status 0)
    {"error": {"kind": ..., "stage": ..., "message": ...}}          otherwise (exit status 3)

Error kinds: "invalid_checkpoint" (not weights only / unreadable), "checkpoint_mismatch" (the weights do not
fit the student's network), "missing_module", "interface" (the factory or preprocessing returned something
unusable), "student_code" (their code raised), and the limits: "memory", "processes", "file_size".
The test images come as raw uint8 records without labels: accuracy is computed by the parent, never here.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import json
import os
import pickle
import re
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

RECORD_BYTES = 3072
SAVE_HINT = (
    "save the weights with torch.save(model.state_dict(), 'model-v1.pt') (or as .safetensors) and upload that file"
)
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "model_state", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
MAX_EVENTS = 20_000
MAX_MODULES = 5_000
MEMORY_TEXT = ("can't allocate memory", "Cannot allocate memory", "out of memory")
ACTIVATIONS = frozenset({"relu6", "leaky_relu", "elu", "gelu", "selu", "silu", "hardtanh", "mish", "celu", "prelu"})
ADDS = frozenset({"add", "add_", "__add__", "__radd__", "__iadd__"})
POOLS = frozenset({"avg_pool2d", "adaptive_avg_pool2d", "max_pool2d", "adaptive_max_pool2d"})
STUDENT_FILES: list[str] = []
CALLABLE_NAMES: dict[int, str] = {}
"""Folder prefixes of the student's files, to point error messages at their own line (sys.path may change)."""


class HarnessError(Exception):
    """A reason the evaluation cannot go on, reported to the parent as {"error": ...}."""

    def __init__(self, kind: str, stage: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.stage, self.message = kind, stage, message

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "stage": self.stage, "message": self.message[:2000]}


def main(argv: list[str]) -> int:
    result_fd = int(os.environ["GRADER_RESULT_FD"])
    os.set_inheritable(result_fd, False)  # processes the student's code starts do not get it
    with os.fdopen(result_fd, "wb") as result:
        try:
            payload, status = evaluate(json.loads(Path(argv[1]).read_text())), 0
        except HarnessError as exc:
            payload, status = {"error": exc.to_json()}, 3
        result.write(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    return status


def evaluate(job: Mapping[str, Any]) -> dict[str, Any]:
    """Import, build, load, trace, predict; the payload for the parent."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    torch.set_num_threads(int(job.get("threads", 2)))
    device = torch.device(job.get("device", "cpu"))
    _exact_fp32(device)
    code_dir = str(job["code_dir"])
    sys.path.insert(0, code_dir)
    STUDENT_FILES.append(code_dir + os.sep)
    network, preprocess = job["network"], job["preprocess"]
    module = _import(code_dir, network["module"])
    parse = _function(_import(code_dir, preprocess["module"]), preprocess["function"])
    factory = _function(module, network["factory"])
    seconds["import"] = _lap(started)
    model = _build(factory, network["arguments"])
    _load_weights(model, job["checkpoint"])
    model = _stage_call("moving the model to " + str(device), lambda: model.to(device).eval())
    seconds["load"] = _lap(started) - seconds["import"]
    images = _read_images(job["images"], int(job["count"]))
    record = _record_preparer(job.get("record_dtype", "float32"))
    kwargs = dict(preprocess.get("keyword_arguments", {}))
    trace = trace_model(model, _preprocess(parse, images[:2], record, kwargs), device)
    predictions, classes = _predict(model, parse, images, record, kwargs, device, int(job.get("batch_size", 200)))
    seconds["predict"] = _lap(started) - seconds["load"] - seconds["import"]
    info = {"torch_version": torch.__version__, "device": str(device), "output_classes": classes, "seconds": seconds}
    return {"predictions": predictions, "trace": trace, "info": info}


def _lap(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _exact_fp32(device: torch.device) -> None:
    """Same numbers on any GPU (no TF32, deterministic cuDNN), as the grader's own evaluator does."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


@contextlib.contextmanager
def student_stage(stage: str) -> Iterator[None]:
    """Turn anything the student's code raises (even SystemExit) into a HarnessError naming where."""
    try:
        yield
    except HarnessError:
        raise
    except MemoryError as exc:
        raise HarnessError("memory", stage, f"MemoryError while {stage}") from exc
    except BaseException as exc:  # the student's code may raise anything, exit() included
        message = f"{type(exc).__name__}: {str(exc)[:500]}"
        raise HarnessError(_error_kind(exc, message), stage, message + _where(exc)) from exc


def _error_kind(exc: BaseException, message: str) -> str:
    """Which limit an exception shows, if any: the sandbox's RLIMITs surface as these errors."""
    if any(text in message for text in MEMORY_TEXT):
        return "memory"
    if (isinstance(exc, OSError) and exc.errno == errno.EAGAIN) or "can't start new thread" in message:
        return "processes"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "file_size"
    return "student_code"


def _stage_call(stage: str, call: Any) -> Any:
    with student_stage(stage):
        return call()


def _where(exc: BaseException) -> str:
    """The innermost line of the student's own files in the traceback, e.g. ' (NetWork.py, line 12)'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(tuple(STUDENT_FILES))]
    return f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""


def _import(code_dir: str, name: str) -> Any:
    """Import `name` from the student's folder; the file name may differ in case (Network.py for NetWork)."""
    files = {p.stem: p for p in Path(code_dir).glob("*.py")}
    stem = name if name in files else next((s for s in files if s.lower() == name.lower()), None)
    if stem is None:
        raise HarnessError("missing_module", f"importing {name}", f"{name}.py is not among the submitted files")
    with student_stage(f"importing {stem}.py"):
        return importlib.import_module(stem)


def _function(module: Any, name: str) -> Any:
    """The callable `name` of the student's module, renamed so messages can always say which it is."""
    value = getattr(module, name, None)
    if not callable(value):
        raise HarnessError("interface", f"finding {name}", f"{module.__name__}.py has no function or class {name}")
    CALLABLE_NAMES[id(value)] = name
    return value


def _name(value: Any) -> str:
    return CALLABLE_NAMES.get(id(value), "the function")


def _build(factory: Any, arguments: Mapping[str, Any]) -> torch.nn.Module:
    shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
    with student_stage(f"building the network with {_name(factory)}({shown})"):
        torch.manual_seed(0)
        model = factory(*arguments.values())
    if not isinstance(model, torch.nn.Module):
        raise HarnessError(
            "interface",
            "building the network",
            f"{_name(factory)}(...) returned {type(model).__name__}, not a torch.nn.Module",
        )
    return model


def _load_weights(model: torch.nn.Module, path: str) -> None:
    raw = read_checkpoint(Path(path).read_bytes())
    expected = _stage_call("reading your network's state_dict()", model.state_dict)
    state = _best_naming(_unwrap(raw), set(expected))
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("different shapes", wrong))
            if names
        ]
        raise HarnessError("checkpoint_mismatch", "loading the weights into your network", "; ".join(parts))
    with student_stage("loading the weights into your network"):
        model.load_state_dict(state, strict=False)


def read_checkpoint(data: bytes) -> Any:
    """The file's contents, weights only: a safetensors file, or torch.load's restricted unpickler."""
    stage = "loading the checkpoint"
    if not data:
        raise HarnessError("invalid_checkpoint", stage, f"the checkpoint file is empty; {SAVE_HINT}")
    if data[8:9] == b"{":  # an 8-byte header length, then safetensors' JSON header
        from safetensors.torch import load as load_safetensors

        try:
            return load_safetensors(data)
        except Exception as exc:  # SafetensorError and friends: a malformed header or truncated data
            message = f"safetensors file cannot be read ({exc}); {SAVE_HINT}"
            raise HarnessError("invalid_checkpoint", stage, message) from exc
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" (it refers to {found.group(1)})" if found else ""
        raise HarnessError(
            "invalid_checkpoint",
            stage,
            f"checkpoint holds Python objects, not only tensors{what}; only weights are loaded, never code from a "
            f"file, so a whole model saved with torch.save(model) cannot be used: {SAVE_HINT}",
        ) from exc
    except Exception as exc:  # torch raises many kinds for files that are not plain state dicts
        message = f"checkpoint cannot be read ({type(exc).__name__}: {str(exc)[:300]}); {SAVE_HINT}"
        raise HarnessError("invalid_checkpoint", stage, message) from exc


def _unwrap(raw: Any) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, found inside {'state_dict': ...}-style containers."""
    for _ in range(4):
        if isinstance(raw, Mapping) and any(isinstance(v, torch.Tensor) for v in raw.values()):
            return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        inner = next((k for k in CONTAINER_KEYS if isinstance(raw, Mapping) and isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            break
        raw = raw[inner]
    raise HarnessError("invalid_checkpoint", "loading the checkpoint", "no state_dict (name → tensor mapping) found")


def _best_naming(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """The state as saved, or with DataParallel/compile prefixes removed: whichever names fit the network."""
    candidates = [state]
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in candidates[-1]):
            candidates.append({k[len(prefix) :]: v for k, v in candidates[-1].items()})
    return max(candidates, key=lambda c: len(expected & set(c)))


def _read_images(path: str, count: int) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8, count=count * RECORD_BYTES)
    return data.reshape(count, RECORD_BYTES)


def _record_preparer(dtype: str) -> Any:
    """A fresh copy per call (the student's code may change it in place), as the starter's DataReader gives it."""
    numpy_dtype = np.dtype(dtype)
    return lambda row: row.astype(numpy_dtype, copy=True)


def _preprocess(parse: Any, rows: np.ndarray, record: Any, kwargs: Mapping[str, Any]) -> torch.Tensor:
    with student_stage(f"preprocessing test records with {_name(parse)}"):
        arrays = [_as_array(parse(record(row), **kwargs)) for row in rows]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise HarnessError(
            "interface",
            "preprocessing",
            f"{_name(parse)} returned arrays of shapes {sorted(shapes)[:3]}; expected one 3-D shape like (3, 32, 32)",
        )
    return torch.from_numpy(np.stack(arrays))


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _predict(
    model: torch.nn.Module,
    parse: Any,
    images: np.ndarray,
    record: Any,
    kwargs: Mapping[str, Any],
    device: torch.device,
    batch_size: int,
) -> tuple[list[int], int]:
    predictions: list[int] = []
    classes = 0
    for start in range(0, images.shape[0], batch_size):
        batch = _preprocess(parse, images[start : start + batch_size], record, kwargs).to(device)
        with torch.inference_mode(), student_stage("running the network on the test images"):
            output = model(batch)
        logits = output[0] if isinstance(output, tuple | list) else output
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch.shape[0]:
            raise HarnessError(
                "interface", "running the network", f"expected logits of shape [batch, classes], got {_shape(logits)}"
            )
        classes = int(logits.shape[1])
        predictions += logits.argmax(dim=1).tolist()
    return predictions, classes


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def trace_model(model: torch.nn.Module, batch: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """Modules and the calls of one forward pass on `batch` (2 images), with which output feeds which call."""
    names = {id(module): name for name, module in model.named_modules()}
    tracer = Tracer(names)
    hooks = [
        torch.nn.modules.module.register_module_forward_pre_hook(tracer.enter),
        torch.nn.modules.module.register_module_forward_hook(tracer.leave, always_call=True),
    ]
    batch = batch.to(device)
    tracer.start(batch)
    try:
        with torch.inference_mode(), student_stage("running the network on the test images"), tracer:
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "modules": describe_modules(model),
        "events": tracer.events,
        "truncated": tracer.truncated,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def describe_modules(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Leaf modules with their shapes: convolutions, batch norms, linear layers and the rest by type."""
    found = []
    for name, module in model.named_modules():
        if len(found) >= MAX_MODULES:
            break
        if any(True for _ in module.children()):
            continue
        entry: dict[str, Any] = {"name": name, "type": type(module).__name__}
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            entry.update(
                {
                    "in": module.in_channels,
                    "out": module.out_channels,
                    "k": list(module.kernel_size),
                    "s": list(module.stride),
                }
            )
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            entry["c"] = module.num_features
        elif isinstance(module, torch.nn.Linear):
            entry.update({"in": module.in_features, "out": module.out_features})
        found.append(entry)
    return found


class Tracer(TorchFunctionMode):
    """Records conv / batch_norm / relu / add / linear / pool calls: [op, module, inputs, attributes].

    `inputs` has one list per tensor argument: the indices of the recorded calls whose outputs reach it
    (through unrecorded calls such as views, slicing or padding); [] is the network input or a constant.
    Every tensor seen is kept alive until the pass ends, so an `id()` names one tensor only.
    """

    def __init__(self, names: Mapping[int, str]) -> None:
        super().__init__()
        self.names = names
        self.stack: list[str] = []
        self.events: list[list[Any]] = []
        self.truncated = False
        self._producers: dict[int, tuple[int, ...]] = {}
        self._alive: list[Any] = []

    def enter(self, module: torch.nn.Module, args: Any) -> None:
        self.stack.append(self.names.get(id(module), self.stack[-1] if self.stack else ""))

    def leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        try:
            self._record(getattr(func, "__name__", ""), args, kwargs, result)
        except Exception:  # tracing must never break the student's forward pass
            self.truncated = True
        return result

    def _record(self, name: str, args: Any, kwargs: Mapping[str, Any], result: Any) -> None:
        outputs = [t for t in _flat(result) if isinstance(t, torch.Tensor)]
        if not outputs:
            return
        op = _op(name)
        inputs = [list(self._producers.get(id(t), ())) for t in _data_arguments(op, args, kwargs)]
        if op is None or len(self.events) >= MAX_EVENTS:
            # Views, slicing, padding...: their outputs carry the producers of their inputs on.
            self.truncated = self.truncated or op is not None
            produced = tuple(sorted({i for group in inputs for i in group}))
        else:
            produced = (len(self.events),)
            module = self.stack[-1] if self.stack else ""
            self.events.append([op, module, inputs, _attributes(op, name, args, kwargs, outputs[0])])
        self._alive += [*outputs, *_flat(list(args))]
        for tensor in outputs:
            self._producers[id(tensor)] = produced

    def start(self, batch: torch.Tensor) -> None:
        self._producers[id(batch)] = ()


def _data_arguments(op: str | None, args: Any, kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
    """The activations a call reads: both operands of an addition, the input of a layer, any tensor otherwise."""
    tensors = [t for t in _flat([*args, *kwargs.values()]) if isinstance(t, torch.Tensor)]
    tensors = [t for t in tensors if not isinstance(t, torch.nn.Parameter)]
    if op == "add":
        return tensors[:2]
    return tensors[:1] if op is not None else tensors


def _flat(value: Any) -> list[Any]:
    if isinstance(value, tuple | list):
        return [item for inner in value for item in _flat(inner)]
    return [value]


def _op(name: str) -> str | None:
    base = name.strip("_")
    if name in ("conv1d", "conv2d", "conv3d"):
        return "conv"
    if name == "batch_norm":
        return "bn"
    if base == "relu":
        return "relu"
    if base in ACTIVATIONS:
        return "act"
    if name in ADDS:
        return "add"
    if name == "linear":
        return "linear"
    return "pool" if name in POOLS else None


def _attributes(op: str, name: str, args: Any, kwargs: Mapping[str, Any], output: torch.Tensor) -> dict[str, Any]:
    attributes: dict[str, Any] = {"shape": list(output.shape[1:])}
    if op == "conv":
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
        groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
        stride = [int(s) for s in stride] if isinstance(stride, tuple | list) else [int(stride)] * (weight.dim() - 2)
        attributes.update(
            {
                "in": int(weight.shape[1]) * int(groups),
                "out": int(weight.shape[0]),
                "k": list(weight.shape[2:]),
                "s": stride,
            }
        )
    elif op == "bn":
        training = args[5] if len(args) > 5 else kwargs.get("training", False)
        attributes.update({"c": int(args[0].shape[1]), "training": bool(training)})
    elif op == "act":
        attributes["fn"] = name.strip("_")
    elif op == "linear":
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        attributes.update({"in": int(weight.shape[1]), "out": int(weight.shape[0])})
    return attributes


if __name__ == "__main__":
    sys.exit(main(sys.argv))
