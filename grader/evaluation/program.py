"""A student's network as a program: the graph their code exported, checked and run by the grader's own code.

Student-code mode takes nothing the student's process says about itself on trust: that process runs their code,
so it could write any result. It only builds the network and hands back its computation graph (torch.export,
functionalised, written as JSON by grader/evaluation/student/harness.py: no pickle). Here the grader
- checks the graph: every operation is on an allow-list of what a CIFAR ResNet needs (convolutions, batch
  norm, activations, additions, pooling, linear layers, reshaping, padding, slicing at fixed positions);
  anything else (lookups, gathers, comparisons, data-dependent indexing, Python callables) rejects the run
  with a reason naming the operation;
- binds every weight the graph reads to the uploaded checkpoint's tensors (a tensor the checkpoint lacks
  rejects the run; tensor constants baked into the code are limited to a few values);
- runs it, in a sandboxed child with no student code (grader/evaluation/child.py), on the test images
  preprocessed by the grader's own transform;
- records the calls of one pass as trace events (`[op, module, inputs, attributes]`, the format
  grader/evaluation/student/trace.py reads), so the architecture is inferred from the graph the grader itself ran.

Module names in the graph are labels the student's code chose; they only group calls into blocks. What the
blocks compute (which convolutions feed which additions, kernel sizes, strides) is what the grader ran.

Wire format:
    {"format": 1, "fixed_batch": int | null,
     "inputs": [{"name", "kind": "parameter" | "buffer" | "constant" | "input", "target", "shape"}],
     "constants": {target: {"shape": [int], "dtype": str, "values": [number]}},
     "nodes": [{"name", "op", "args": [...], "kwargs": {...}, "module", "module_type"}],
     "outputs": [{"ref": name}]}
An argument is a number, boolean, null, short text, a list, {"ref": name}, {"float": "inf" | "-inf" | "nan"},
{"dtype": name}, {"device": name}, {"memory_format": name} or {"layout": name}.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

FORMAT = 1
MAX_NODES = 20_000
MAX_INPUTS = 20_000
MAX_CONSTANT_VALUES = 4096
MAX_BATCH = 4096
MAX_NAME = 300
MAX_EVENTS = 20_000
MAX_MODULES = 5_000

RECORDED: dict[str, str] = {
    "aten.conv2d.default": "conv",
    "aten.conv2d.padding": "conv",
    "aten.convolution.default": "conv",
    "aten.batch_norm.default": "bn",
    "aten._native_batch_norm_legit_no_training.default": "bn",
    "aten._native_batch_norm_legit_functional.default": "bn",
    "aten.native_batch_norm.default": "bn",
    "aten.relu.default": "relu",
    "aten.leaky_relu.default": "act",
    "aten.elu.default": "act",
    "aten.gelu.default": "act",
    "aten.silu.default": "act",
    "aten.hardtanh.default": "act",
    "aten.mish.default": "act",
    "aten.celu.default": "act",
    "aten.selu.default": "act",
    "aten.prelu.default": "act",
    "aten.add.Tensor": "add",
    "aten.linear.default": "linear",
    "aten.addmm.default": "linear",
    "aten.avg_pool2d.default": "pool",
    "aten.adaptive_avg_pool2d.default": "pool",
    "aten._adaptive_avg_pool2d.default": "pool",
    "aten.max_pool2d.default": "pool",
    "aten.max_pool2d_with_indices.default": "pool",
    "aten.adaptive_max_pool2d.default": "pool",
}
"""Operations recorded as trace events, by the kind grader/evaluation/student/trace.py knows them as."""

PASSED_THROUGH = frozenset(
    {
        "aten.add.Scalar",
        "aten.sub.Tensor",
        "aten.sub.Scalar",
        "aten.rsub.Scalar",
        "aten.mul.Tensor",
        "aten.mul.Scalar",
        "aten.div.Tensor",
        "aten.div.Scalar",
        "aten.neg.default",
        "aten.sigmoid.default",
        "aten.tanh.default",
        "aten.mean.dim",
        "aten.sum.dim_IntList",
        "aten.mm.default",
        "aten.t.default",
        "aten.matmul.default",
        "aten.view.default",
        "aten.reshape.default",
        "aten._unsafe_view.default",
        "aten.flatten.using_ints",
        "aten.squeeze.dim",
        "aten.squeeze.dims",
        "aten.unsqueeze.default",
        "aten.permute.default",
        "aten.transpose.int",
        "aten.contiguous.default",
        "aten.clone.default",
        "aten.alias.default",
        "aten.detach.default",
        "aten.expand.default",
        "aten.slice.Tensor",
        "aten.select.int",
        "aten.pad.default",
        "aten.constant_pad_nd.default",
        "aten.cat.default",
        "aten.zeros.default",
        "aten.zeros_like.default",
        "aten.new_zeros.default",
        "aten.dropout.default",
        "aten.softmax.int",
        "aten._softmax.default",
        "aten.log_softmax.int",
        "aten._log_softmax.default",
        "aten.to.dtype",
        "aten._to_copy.default",
        "aten.lift_fresh_copy.default",
    }
)
"""Operations run but not recorded: arithmetic, reshaping, fixed-position slicing and padding, normalisation of
the logits. None of them can read a value at a position that depends on the data."""

SPECIAL = frozenset({"getitem", "aten.sym_size.int", "aten._assert_tensor_metadata.default"})
INT_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "_operator.add": operator.add,
    "_operator.sub": operator.sub,
    "_operator.mul": operator.mul,
    "_operator.floordiv": operator.floordiv,
}
"""Arithmetic on sizes (a dynamic batch dimension), integers only."""
ALLOWED = frozenset(RECORDED) | PASSED_THROUGH | SPECIAL | frozenset(INT_ARITHMETIC)

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
    "uint8": torch.uint8,
}
MEMORY_FORMATS = {
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "preserve_format": torch.preserve_format,
}
TEXTS = frozenset({"constant", "reflect", "replicate", "circular", "none", "tanh"})
"""Text arguments: padding modes and gelu's approximation."""
FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


class ProgramRejected(Exception):
    """The graph cannot be run as a network of the submitted weights; the message is written for the student."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WeightsMismatch(ProgramRejected):
    """The checkpoint lacks a tensor the graph reads, or holds it in another shape."""


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    op: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    module: str
    module_type: str

    def where(self) -> str:
        return f"{self.name} ({self.module or 'the top-level module'})"


@dataclass(frozen=True, slots=True)
class Program:
    """A checked graph: every operation allowed, every reference to an earlier value."""

    input_name: str
    weights: Mapping[str, tuple[str, tuple[int, ...] | None]]
    """Placeholder name → (state_dict name, shape the student's network declares) for parameters and buffers."""
    parameters: frozenset[str]
    """Placeholder names of trainable parameters (counted in the trace's `parameters`)."""
    constants: Mapping[str, torch.Tensor]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    fixed_batch: int | None

    @classmethod
    def from_json(cls, raw: Any) -> Program:
        """Check the wire format; ProgramRejected saying what is wrong (an unknown operation by name)."""
        if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
            raise ProgramRejected(f"the exported graph is not in program format {FORMAT}")
        fixed = raw.get("fixed_batch")
        if fixed is not None and (type(fixed) is not int or not 1 <= fixed <= MAX_BATCH):
            raise ProgramRejected("the exported graph's batch size is not a number from 1 to 4096")
        known: set[str] = set()
        input_name, weights, parameters, constants = _inputs(raw.get("inputs"), raw.get("constants"), known)
        nodes = _nodes(raw.get("nodes"), known)
        _refuse_weight_selection(nodes, input_name)
        outputs = raw.get("outputs")
        if not isinstance(outputs, list) or not outputs:
            raise ProgramRejected("the exported graph has no output")
        names = tuple(_ref(output, known, "the output") for output in outputs)
        return cls(input_name, weights, frozenset(parameters), constants, nodes, names, fixed)

    def used_weights(self) -> dict[str, str]:
        """Placeholder → state_dict name of the weights some operation reads."""
        used = {ref for node in self.nodes for ref in _refs([*node.args, *node.kwargs.values()])}
        return {name: target for name, (target, _) in self.weights.items() if name in used}

    def bind(self, tensors: Mapping[str, torch.Tensor], prefix: str = "") -> BoundProgram:
        """Each weight the graph reads, taken from the checkpoint's `tensors` (names as saved, or without the
        checkpoint's stripped `prefix`); ProgramRejected naming what is missing or shaped differently."""
        bound: dict[str, torch.Tensor] = {}
        missing, different = [], []
        for name, target in self.used_weights().items():
            tensor = tensors.get(target)
            if tensor is None and prefix and target.startswith(prefix):
                tensor = tensors.get(target[len(prefix) :])
            if tensor is None:
                missing.append(target)
                continue
            declared = self.weights[name][1]
            if declared is not None and tuple(tensor.shape) != declared:
                different.append(f"{target} {tuple(tensor.shape)} vs {declared}")
                continue
            bound[name] = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
        if missing or different:
            parts = [
                f"{label}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
                for label, names in (("missing", missing), ("different shapes", different))
                if names
            ]
            raise WeightsMismatch("loading the weights into your network: " + "; ".join(parts))
        parameter_count = sum(bound[name].numel() for name in bound if name in self.parameters)
        return BoundProgram(self, {**bound, **self.constants}, parameter_count)


@dataclass(frozen=True, slots=True)
class BoundProgram:
    """A checked graph with the checkpoint's tensors: callable on a batch of preprocessed images."""

    program: Program
    values: Mapping[str, torch.Tensor]
    parameter_count: int

    def to(self, device: torch.device) -> BoundProgram:
        moved = {name: tensor.to(device) for name, tensor in self.values.items()}
        return BoundProgram(self.program, moved, self.parameter_count)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [batch, classes] for preprocessed images [batch, 3, 32, 32]."""
        return self._run(images, None)

    def trace(self, images: torch.Tensor) -> dict[str, Any]:
        """One pass recorded as grader/evaluation/student/trace.py reads it: events, leaf modules, parameter count."""
        recorder = _Recorder(self.program)
        self._run(images, recorder)
        return {
            "modules": recorder.modules(),
            "events": recorder.events,
            "truncated": recorder.truncated,
            "parameters": self.parameter_count,
        }

    def _run(self, images: torch.Tensor, recorder: _Recorder | None) -> torch.Tensor:
        program = self.program
        env: dict[str, Any] = {**self.values, program.input_name: images}
        if recorder is not None:
            recorder.start(program.input_name)
        for node in program.nodes:
            args = [_resolve(arg, env, images.device) for arg in node.args]
            kwargs = {key: _resolve(value, env, images.device) for key, value in node.kwargs.items()}
            try:
                result = _call(node, args, kwargs, images.device)
            except (MemoryError, torch.OutOfMemoryError):
                raise
            except Exception as exc:  # torch's errors for arguments that do not fit: the graph's doing
                message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
                raise ProgramRejected(f"running your network's graph failed at {node.where()}: {message}") from exc
            env[node.name] = result
            if recorder is not None:
                recorder.record(node, args, result)
        output = env[program.outputs[0]]
        logits = output[0] if isinstance(output, tuple | list) and output else output
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != images.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ProgramRejected(f"your network returned {shape}; expected logits of shape [batch, classes]")
        return logits


def _inputs(
    raw: Any, raw_constants: Any, known: set[str]
) -> tuple[str, dict[str, tuple[str, tuple[int, ...] | None]], list[str], dict[str, torch.Tensor]]:
    if not isinstance(raw, list) or len(raw) > MAX_INPUTS:
        raise ProgramRejected("the exported graph's inputs are not a list")
    raw_constants = raw_constants if isinstance(raw_constants, Mapping) else {}
    input_names, parameters = [], []
    weights: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    constants: dict[str, torch.Tensor] = {}
    constant_values = 0
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise ProgramRejected("an input of the exported graph is not a mapping")
        name, kind, target = _name(entry.get("name")), entry.get("kind"), entry.get("target")
        if name in known:
            raise ProgramRejected(f"the exported graph names {name!r} twice")
        known.add(name)
        if kind == "input":
            input_names.append(name)
        elif kind in ("parameter", "buffer"):
            weights[name] = (_name(target), _shape(entry.get("shape")))
            if kind == "parameter":
                parameters.append(name)
        elif kind == "constant":
            constants[name] = _constant(raw_constants.get(target), str(target)[:MAX_NAME])
            constant_values += constants[name].numel()
            if constant_values > MAX_CONSTANT_VALUES:
                raise ProgramRejected(
                    f"your network's code holds more than {MAX_CONSTANT_VALUES} values in tensor constants; "
                    "every weight must come from the uploaded checkpoint"
                )
        else:
            raise ProgramRejected(f"the exported graph takes an input of kind {str(kind)[:40]!r}")
    if len(input_names) != 1:
        raise ProgramRejected(f"your network's forward must take one input (the images), not {len(input_names)}")
    return input_names[0], weights, parameters, constants


def _constant(raw: Any, target: str) -> torch.Tensor:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("values"), list):
        raise ProgramRejected(
            f"your network's code holds a large tensor constant ({target}); every weight must come from the "
            f"uploaded checkpoint (constants may hold at most {MAX_CONSTANT_VALUES} values)"
        )
    shape = _shape(raw.get("shape")) or ()
    values = raw["values"]
    if len(values) != math.prod(shape) or len(values) > MAX_CONSTANT_VALUES:
        raise ProgramRejected(f"the tensor constant {target} does not hold as many values as its shape says")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise ProgramRejected(f"the tensor constant {target} holds something other than numbers")
    dtype = DTYPES.get(str(raw.get("dtype")), torch.float32)
    return torch.tensor(values, dtype=torch.float64).to(dtype).reshape(shape)


def _nodes(raw: Any, known: set[str]) -> tuple[Node, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_NODES:
        raise ProgramRejected(f"the exported graph's operations are not a list of at most {MAX_NODES}")
    nodes = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise ProgramRejected("an operation of the exported graph is not a mapping")
        name, op = _name(entry.get("name")), str(entry.get("op"))[:MAX_NAME]
        module = str(entry.get("module") or "")[:MAX_NAME]
        if op not in ALLOWED:
            raise ProgramRejected(
                f"your network uses {op} (at {name} in {module or 'the top-level module'}), which is not among the "
                "operations a CIFAR ResNet needs (convolution, batch norm, activations, addition, pooling, linear, "
                "reshaping, padding and slicing at fixed positions); lookups and data-dependent indexing are refused"
            )
        args, kwargs = entry.get("args"), entry.get("kwargs")
        if not isinstance(args, list) or not isinstance(kwargs, Mapping):
            raise ProgramRejected(f"operation {name} has malformed arguments")
        for value in [*args, *kwargs.values()]:
            _check_argument(value, known, name)
        if name in known:
            raise ProgramRejected(f"the exported graph names {name!r} twice")
        known.add(name)
        module_type = str(entry.get("module_type") or "")[:100]
        nodes.append(Node(name, op, tuple(args), {str(k): v for k, v in kwargs.items()}, module, module_type))
    return tuple(nodes)


WEIGHT_SELECTION = frozenset({"aten.slice.Tensor", "aten.select.int"})


def _refuse_weight_selection(nodes: Sequence[Node], input_name: str) -> None:
    """Slicing a value computed from weights alone (e.g. rows of a table by the batch's position) is a lookup:
    a network slices only what it computes from the images (an option-A shortcut's strided subsampling)."""
    from_images = {input_name}
    for node in nodes:
        refs = _refs(list(node.args))
        if node.op in WEIGHT_SELECTION and refs and refs[0] not in from_images:
            raise ProgramRejected(
                f"your network selects part of a weight at {node.where()}; a network may slice only values it "
                "computes from the images (a lookup into a table of weights is refused)"
            )
        if any(ref in from_images for ref in refs):
            from_images.add(node.name)


def _check_argument(value: Any, known: set[str], where: str, depth: int = 0) -> None:
    if depth > 4:
        raise ProgramRejected(f"operation {where} has arguments nested too deeply")
    if value is None or isinstance(value, bool | int | float):
        return
    if isinstance(value, str):
        if value not in TEXTS:
            raise ProgramRejected(f"operation {where} has a text argument {value[:40]!r} the grader does not accept")
        return
    if isinstance(value, list):
        for item in value[:MAX_INPUTS]:
            _check_argument(item, known, where, depth + 1)
        return
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "ref":
            _ref(value, known, f"operation {where}")
            return
        if (key, inner) in {("layout", "strided")} or (key == "device" and isinstance(inner, str)):
            return
        if (key == "float" and inner in FLOATS) or (key == "dtype" and inner in DTYPES):
            return
        if key == "memory_format" and inner in MEMORY_FORMATS:
            return
    raise ProgramRejected(f"operation {where} has an argument the grader does not accept: {str(value)[:80]}")


def _ref(value: Any, known: set[str], where: str) -> str:
    name = value.get("ref") if isinstance(value, Mapping) else None
    if not isinstance(name, str) or name not in known:
        raise ProgramRejected(f"{where} refers to {str(name)[:60]!r}, which is not computed before it")
    return name


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise ProgramRejected("the exported graph has a missing or overlong name")
    return value


def _shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 8 or any(type(d) is not int or d < 0 for d in value):
        raise ProgramRejected("the exported graph declares a malformed tensor shape")
    return tuple(value)


def _refs(values: Sequence[Any]) -> list[str]:
    found = []
    for value in values:
        if isinstance(value, Mapping) and "ref" in value:
            found.append(value["ref"])
        elif isinstance(value, list):
            found += _refs(value)
    return found


def _resolve(value: Any, env: Mapping[str, Any], device: torch.device) -> Any:
    if isinstance(value, list):
        return [_resolve(item, env, device) for item in value]
    if isinstance(value, Mapping):
        ((key, inner),) = value.items()
        if key == "ref":
            return env[inner]
        if key == "float":
            return FLOATS[inner]
        if key == "dtype":
            return DTYPES[inner]
        if key == "device":
            return device  # wherever the student's code asked, values are made where the grader runs
        if key == "memory_format":
            return MEMORY_FORMATS[inner]
        return torch.strided
    return value


_OPERATIONS: dict[str, Any] = {}


def _operation(op: str) -> Any:
    """The aten operation `op` names (only names on the allow-list ever get here)."""
    found = _OPERATIONS.get(op)
    if found is None:
        _, name, overload = op.split(".")
        found = _OPERATIONS[op] = getattr(getattr(torch.ops.aten, name), overload)
    return found


def _call(node: Node, args: list[Any], kwargs: dict[str, Any], device: torch.device) -> Any:
    if node.op == "getitem":
        source, index = args
        if not isinstance(source, tuple | list) or type(index) is not int:
            raise TypeError("getitem takes an element of an operation's tuple result by position")
        return source[index]
    if node.op == "aten.sym_size.int":
        tensor, dim = args
        return int(tensor.shape[dim])
    if node.op == "aten._assert_tensor_metadata.default":
        return None
    if node.op in INT_ARITHMETIC:
        left, right = args
        if type(left) is not int or type(right) is not int:
            raise TypeError(f"{node.op} applies to sizes (integers) only")
        return INT_ARITHMETIC[node.op](left, right)
    if "pin_memory" in kwargs:
        kwargs["pin_memory"] = False
    for value in [*args, *kwargs.values()]:
        if isinstance(value, torch.Tensor) and value.is_sparse:
            raise TypeError("sparse tensors are not accepted")
    return _operation(node.op)(*args, **kwargs)


class _Recorder:
    """Trace events as the harness's tracer used to write them: [op, module, inputs, attributes]."""

    def __init__(self, program: Program) -> None:
        self.events: list[list[Any]] = []
        self.truncated = False
        self._producers: dict[str, tuple[int, ...]] = {}
        self._module_types: dict[str, str] = {}
        self._module_facts: dict[str, dict[str, Any]] = {}
        for node in program.nodes:
            if node.module and node.module not in self._module_types:
                self._module_types[node.module] = node.module_type

    def start(self, input_name: str) -> None:
        self._producers[input_name] = ()

    def record(self, node: Node, args: list[Any], result: Any) -> None:
        data = [ref for ref in _refs(list(node.args)) if ref in self._producers]
        outputs = [t for t in _flat(result) if isinstance(t, torch.Tensor)]
        op = RECORDED.get(node.op)
        if not outputs:
            return
        if op is None or len(self.events) >= MAX_EVENTS:
            self.truncated = self.truncated or op is not None
            self._producers[node.name] = tuple(sorted({i for ref in data for i in self._producers[ref]}))
            return
        # an addition's two operands (a weight's producers are none); any other call's data input
        operands = _refs(list(node.args))[:2] if op == "add" else data[:1]
        inputs = [list(self._producers.get(ref, ())) for ref in operands]
        attributes = _attributes(op, node, args, outputs[0])
        self.events.append([op, node.module, inputs, attributes])
        self._producers[node.name] = (len(self.events) - 1,)
        if op in ("conv", "bn", "linear") and node.module not in self._module_facts:
            self._module_facts[node.module] = {k: v for k, v in attributes.items() if k in ("in", "out", "k", "s", "c")}

    def modules(self) -> list[dict[str, Any]]:
        """Leaf modules (no other module inside them) in first-use order, with conv / BN / linear shapes."""
        names = list(self._module_types)
        leaves = [name for name in names if not any(other.startswith(name + ".") for other in names)]
        return [
            {"name": name, "type": self._module_types[name], **self._module_facts.get(name, {})}
            for name in leaves[:MAX_MODULES]
        ]


def _flat(value: Any) -> list[Any]:
    if isinstance(value, tuple | list):
        return [item for inner in value for item in _flat(inner)]
    return [value]


def _attributes(op: str, node: Node, args: list[Any], output: torch.Tensor) -> dict[str, Any]:
    attributes: dict[str, Any] = {"shape": list(output.shape[1:])}
    if op == "conv":
        weight = args[1]
        convolution = node.op == "aten.convolution.default"
        stride = args[3] if len(args) > 3 else node.kwargs.get("stride", 1)
        groups = args[8 if convolution else 6] if len(args) > (8 if convolution else 6) else 1
        dims = weight.dim() - 2
        stride = [int(s) for s in stride] if isinstance(stride, list) else [int(stride)] * dims
        stride = stride * dims if len(stride) == 1 else stride
        attributes.update(
            {
                "in": int(weight.shape[1]) * int(groups),
                "out": int(weight.shape[0]),
                "k": list(weight.shape[2:]),
                "s": stride,
            }
        )
    elif op == "bn":
        training = (
            args[5] if node.op != "aten._native_batch_norm_legit_no_training.default" and len(args) > 5 else False
        )
        attributes.update({"c": int(args[0].shape[1]), "training": bool(training)})
    elif op == "act":
        attributes["fn"] = node.op.split(".")[1]
    elif op == "linear":
        source = args[1] if node.op == "aten.addmm.default" else args[0]
        attributes.update({"in": int(source.shape[-1]), "out": int(output.shape[-1])})
    return attributes
