"""Runs inside the sandbox: builds a student's network from their own code and hands back what it computes.

Nothing this process says about itself is taken on trust (the student's code runs in it and could write any
result), so it never sees the checkpoint or the test images and reports no predictions. It hands back:
- `program`: the network's computation graph (torch.export of the module, functionalised, with a dynamic batch
  dimension), written as plain JSON: no pickle. The grader checks it against an allow-list of operations, binds
  every weight it reads to the uploaded checkpoint's tensors and runs it on the test images itself, in a child
  without student code (grader/evaluation/program.py), and infers the architecture from that run.
- `probe`: what the student's preprocessing returns for records the grader made (random images), twice. The
  grader identifies the transform (one of the known kinds, with its parameters) and applies its own
  implementation to the test images, so the student's function never sees a test image.

Standalone on purpose (standard library, numpy and torch only; never imports `grader`): it is copied into the
sandbox with the protocol module beside it (grader/sandbox/protocol.py, as `_grader_protocol.py`) and run as
`python harness.py JOB.json`. Its one reply, through that protocol:

    {"status": "built", "program": {...}, "probe": [{"shape": [...], "data": base64 float32}, ...], "info": {...}}
    {"status": "error", "kind": ..., "stage": ..., "message": ...}                                 exit status 3

Error kinds: "missing_module", "interface" (the factory or preprocessing returned something unusable),
"export" (torch.export cannot capture the network's forward), "student_code" (their code raised), and the
limits: "memory", "processes", "file_size".
"""

from __future__ import annotations

import base64
import contextlib
import errno
import importlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # in the sandbox: copied beside this file, imported before the student's folder joins sys.path
    import _grader_protocol as protocol  # type: ignore[import-not-found]
except ImportError:  # imported by the grader itself (its tests)
    from grader.sandbox import protocol

RECORD_BYTES = 3072
PROGRAM_FORMAT = 1
FIXED_BATCH = 100
"""Where a network cannot be exported with a free batch size (e.g. it reshapes to a fixed batch), it is exported
for batches of this size and the grader pads the last batch."""
MAX_NODES = 20_000
MAX_CONSTANT_VALUES = 4096
MEMORY_TEXT = ("can't allocate memory", "Cannot allocate memory", "out of memory")
STUDENT_FILES: list[str] = []
"""Folder prefixes of the student's files, to point error messages at their own line (sys.path may change)."""
CALLABLE_NAMES: dict[int, str] = {}


class HarnessError(Exception):
    """A reason the evaluation cannot go on, reported to the parent as the protocol's error reply."""

    def __init__(self, kind: str, stage: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.stage, self.message = kind, stage, message

    def to_json(self) -> dict[str, str]:
        return protocol.error(self.kind, self.message, self.stage)


def main(argv: list[str]) -> int:
    with protocol.result_channel() as channel:  # processes the student's code starts do not get it
        try:
            reply, status = evaluate(json.loads(Path(argv[1]).read_text())), 0
        except HarnessError as exc:
            reply, status = exc.to_json(), 3
        protocol.send(channel, reply)
    return status


def evaluate(job: Mapping[str, Any]) -> dict[str, Any]:
    """Import, build, probe the preprocessing, export the network's graph; the payload for the parent."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    torch.set_num_threads(int(job.get("threads", 2)))
    code_dir = str(job["code_dir"])
    sys.path.insert(0, code_dir)
    STUDENT_FILES.append(code_dir + os.sep)
    network, preprocess = job["network"], job["preprocess"]
    module = _import(code_dir, network["module"])
    parse = _function(_import(code_dir, preprocess["module"]), preprocess["function"])
    factory = _function(module, network["factory"])
    seconds["import"] = _lap(started)
    model = _build(factory, network["arguments"])
    probes = _read_images(job["probes"], int(job["probe_count"]))
    record = _record_preparer(job.get("record_dtype", "float32"))
    kwargs = dict(preprocess.get("keyword_arguments", {}))
    first = _preprocess(parse, probes, record, kwargs)
    again = _preprocess(parse, probes, record, kwargs)
    seconds["probe"] = _lap(started) - seconds["import"]
    model = _stage_call("switching your network to evaluation mode", model.eval)
    program = export_program(model, first[:2])
    seconds["export"] = _lap(started) - seconds["probe"] - seconds["import"]
    info = {"torch_version": torch.__version__, "seconds": seconds}
    return {"status": "built", "program": program, "probe": [_encode(first), _encode(again)], "info": info}


def _encode(batch: torch.Tensor) -> dict[str, Any]:
    """float32 values, little-endian, base64: a compact, exact copy of what the student's function returned."""
    values = batch.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    return {"shape": list(values.shape), "data": base64.b64encode(values.tobytes()).decode("ascii")}


def _lap(started: float) -> float:
    return round(time.perf_counter() - started, 3)


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


def _read_images(path: str, count: int) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8, count=count * RECORD_BYTES)
    return data.reshape(count, RECORD_BYTES)


def _record_preparer(dtype: str) -> Any:
    """A fresh copy per call (the student's code may change it in place), as the starter's DataReader gives it."""
    numpy_dtype = np.dtype(dtype)
    return lambda row: row.astype(numpy_dtype, copy=True)


def _preprocess(parse: Any, rows: np.ndarray, record: Any, kwargs: Mapping[str, Any]) -> torch.Tensor:
    with student_stage(f"preprocessing records with {_name(parse)}"):
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


def export_program(model: torch.nn.Module, sample: torch.Tensor) -> dict[str, Any]:
    """The network's forward on inputs shaped like `sample`, as the JSON program the grader runs."""
    stage = "exporting your network's forward with torch.export (it must not branch on tensor values)"
    with student_stage(stage):
        try:
            exported = torch.export.export(
                model, (sample,), dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},), strict=False
            )
            fixed_batch = None
        except Exception:  # e.g. a view to a fixed batch size: export for one batch size instead
            batch = sample[:1].expand(FIXED_BATCH, *sample.shape[1:]).clone()
            exported = torch.export.export(model, (batch,), strict=False)
            fixed_batch = FIXED_BATCH
        exported = exported.run_decompositions({})  # functional: no in-place updates, buffers never change
    return _program_json(exported, fixed_batch, stage)


def _program_json(exported: Any, fixed_batch: int | None, stage: str) -> dict[str, Any]:
    from torch.export.graph_signature import InputKind, OutputKind

    kinds = {InputKind.PARAMETER: "parameter", InputKind.BUFFER: "buffer", InputKind.CONSTANT_TENSOR: "constant"}
    inputs = []
    for spec in exported.graph_signature.input_specs:
        kind = "input" if spec.kind == InputKind.USER_INPUT else kinds.get(spec.kind, str(spec.kind))
        inputs.append({"name": getattr(spec.arg, "name", ""), "kind": kind, "target": spec.target or ""})
    constants = {}
    for target, value in exported.constants.items():
        if isinstance(value, torch.Tensor):
            small = value.numel() <= MAX_CONSTANT_VALUES
            values = value.detach().to(torch.float64).flatten().tolist() if small else None
            constants[target] = {"shape": list(value.shape), "dtype": _dtype(value.dtype), "values": values}
    nodes = [_node(node) for node in exported.graph.nodes if node.op == "call_function"]
    if len(nodes) > MAX_NODES:
        raise HarnessError("export", stage, f"the graph has {len(nodes)} operations; at most {MAX_NODES}")
    outputs = [
        {"ref": getattr(spec.arg, "name", "")}
        for spec in exported.graph_signature.output_specs
        if spec.kind == OutputKind.USER_OUTPUT
    ]
    return {
        "format": PROGRAM_FORMAT,
        "fixed_batch": fixed_batch,
        "inputs": inputs,
        "constants": constants,
        "nodes": nodes,
        "outputs": outputs,
    }


def _node(node: Any) -> dict[str, Any]:
    stack = node.meta.get("nn_module_stack") or {}
    module, module_type = next(reversed(stack.values())) if stack else ("", "")
    if str(module).startswith("_empty_nn_module_stack"):  # torch's placeholder for "no module"
        module, module_type = "", ""
    module_type = getattr(module_type, "__name__", str(module_type)).rsplit(".", 1)[-1]
    target = node.target
    op = "getitem" if getattr(target, "__name__", "") == "getitem" else str(target)
    if not isinstance(target, torch._ops.OpOverload) and op != "getitem":
        op = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    return {
        "name": node.name,
        "op": op,
        "args": [_argument(a) for a in node.args],
        "kwargs": {str(k): _argument(v) for k, v in node.kwargs.items()},
        "module": str(module),
        "module_type": module_type,
    }


def _argument(value: Any) -> Any:
    if isinstance(value, torch.fx.Node):
        return {"ref": value.name}
    if isinstance(value, list | tuple):
        return [_argument(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, torch.dtype):
        return {"dtype": _dtype(value)}
    if isinstance(value, torch.device):
        return {"device": value.type}
    if isinstance(value, torch.memory_format | torch.layout):
        return {type(value).__name__: str(value).removeprefix("torch.")}
    return {"unsupported": type(value).__name__}


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
