"""Runs inside the sandbox: calls the student's DataReader / ImageUtils / NetWork / Model code on inputs the grader
made and hands back what their functions returned, as plain data. It judges nothing.

The student's code runs in this process, so anything written here could be forged by it; the grader therefore
only takes raw outputs (arrays as base64, names, shapes and counts as JSON, never a pickle) and compares them with
its own reference implementations in its own process (code_checks.py, beside this file). Sizes are bounded there.

Standalone like harness.py (standard library, numpy and torch; never imports `grader`); run as
`python code_checks_harness.py JOB.json` next to a copy of harness.py, whose helpers it shares, and of the protocol
module (grader/sandbox/protocol.py) it replies through:

    {"status": "checked", "checks": {"preprocessing": {"outputs": {...}} | {"error": <the protocol's error reply>},
                                     "data_reader": ..., ...}, "info": {...}}

Each stage runs on its own: one that raises, or runs past its time (SIGALRM), is reported as {"error": ...} and
the next stage still runs. Stages run in the order the job lists them; training, the slowest, comes last.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import inspect
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# harness.py is copied next to this file; importing it before the student's folder joins sys.path means a student
# file called harness.py cannot stand in for it.
from harness import STUDENT_FILES, HarnessError, _function, _import, protocol
from harness import student_stage as _student_stage

MAX_VALUES = 1_000_000
"""No array with more values than this is sent back (its shape is): the grader asks for far smaller ones, and the
result pipe has a size limit (a result over it ends the whole run `resource_limit`)."""
MAX_DATA_VALUES = 200_000
"""The same for load_data's and the split's arrays (the grader's folder holds 18 records of 3072 values)."""
MAX_NAMES = 4000
"""Parameter and buffer entries reported per network."""
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024


class StageTimeout(BaseException):
    """Raised by SIGALRM when a stage runs past its time; a BaseException so `except Exception` cannot swallow it."""


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    with protocol.result_channel() as channel:
        protocol.send(channel, run(job))
    return 0


def run(job: Mapping[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(int(job.get("threads", 2)))
    code_dir = str(job["code_dir"])
    sys.path.insert(0, code_dir)
    STUDENT_FILES.append(code_dir + os.sep)
    if job.get("stubs"):
        sys.path.append(str(job["stubs"]))  # after the student's folder and site-packages: only what is missing
    _cpu_only()
    checks: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, spec in job["checks"].items():
        started = time.perf_counter()
        try:
            with _time_limit(float(job.get("stage_seconds", 60))):
                checks[name] = {"outputs": STAGES[name](code_dir, spec)}
        except HarnessError as exc:
            checks[name] = {"error": exc.to_json()}
        except StageTimeout:
            message = f"did not finish within {job.get('stage_seconds')} s"
            checks[name] = {"error": protocol.error("timed_out", message, name)}
        seconds[name] = round(time.perf_counter() - started, 3)
    return {"status": "checked", "checks": checks, "info": {"torch_version": torch.__version__, "seconds": seconds}}


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM after `seconds`, then every second: code that catches one StageTimeout still gets the next."""

    def expire(signum: int, frame: Any) -> None:
        raise StageTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def student_stage(stage: str) -> Iterator[None]:
    """harness.student_stage (anything the student's code raises becomes a HarnessError naming where), except that
    the stage's time running out stays a StageTimeout, which ends the stage."""
    try:
        with _student_stage(stage):
            yield
    except HarnessError as exc:
        if isinstance(exc.__cause__, StageTimeout):
            raise StageTimeout from None
        raise


def _cpu_only() -> None:
    """The starter's Model.py calls .cuda(); the sandbox has no GPU, so .cuda() and .to("cuda") stay on the CPU."""
    if torch.cuda.is_available():
        return

    def on_cpu(value: Any) -> Any:
        is_cuda = (isinstance(value, str) and value.startswith("cuda")) or (
            isinstance(value, torch.device) and value.type == "cuda"
        )
        return "cpu" if is_cuda else value

    def patch(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def to(self: Any, *args: Any, **kwargs: Any) -> Any:
            args = tuple(on_cpu(a) for a in args)
            kwargs = {key: on_cpu(value) for key, value in kwargs.items()}
            return original(self, *args, **kwargs)

        setattr(cls, name, to)

    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    patch(torch.Tensor, "to")
    patch(torch.nn.Module, "to")


# ---------------------------------------------------------------------------------------------------- encoding


def encode(value: Any, what: str, max_values: int = MAX_VALUES) -> dict[str, Any]:
    """An array the student's code returned: shape, dtype and (unless too large) float64 values in base64."""
    array = _to_numpy(value, what)
    entry: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size <= max_values and array.dtype.kind in "biuf":
        values = np.ascontiguousarray(array, dtype="<f8")
        entry["data"] = base64.b64encode(values.tobytes()).decode("ascii")
    return entry


def _to_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:  # a ragged list, an object numpy cannot hold
        raise HarnessError("interface", what, f"{what} is not an array ({type(exc).__name__}: {exc})") from exc
    if array.dtype.kind not in "biuf":
        raise HarnessError("interface", what, f"{what} is an array of {array.dtype}, not of numbers")
    return array


def _stack(values: Sequence[Any], what: str) -> dict[str, Any]:
    """Equal-shaped arrays as one [n, ...] array; shapes differing: the shapes (bounded) and no data."""
    arrays = [_to_numpy(value, what) for value in values]
    shapes = [list(a.shape) for a in arrays]
    if any(shape != shapes[0] for shape in shapes):
        return {"shapes": shapes[:64]}
    return encode(np.stack(arrays) if arrays else np.zeros((0,)), what)


def _read_u8(path: str, shape: Sequence[int]) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8, count=int(np.prod(shape))).reshape(tuple(shape))


def _attempt(call: Callable[[], Any]) -> dict[str, Any]:
    """One sub-step on its own: its outputs, or the error, so a failing call leaves the others standing."""
    try:
        return call()
    except HarnessError as exc:
        return {"error": exc.to_json()}


def _seed(seed: int) -> None:
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- (b)


def stage_preprocessing(code_dir: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """parse_record(record, False) twice on the probe records; preprocess_image(image, False) twice on the probe
    images; preprocess_image(image, True) once per seed on one image."""
    module = _import(code_dir, spec["module"])
    records = _read_u8(spec["records"], (spec["count"], 3072)).astype(spec.get("record_dtype", "float32"))
    images = _read_u8(spec["images"], (spec["count"], 32, 32, 3)).astype(np.float32)
    augmented = _read_u8(spec["augmented"], (32, 32, 3)).astype(np.float32)
    parse = _attempt(lambda: {"function": _function(module, spec["parse_record"])})
    process = _attempt(lambda: {"function": _function(module, spec["preprocess_image"])})
    outputs: dict[str, Any] = {}
    if "error" in parse:
        outputs["parse_record"] = parse
    else:
        outputs["parse_record"] = _attempt(lambda: _twice(parse["function"], records, "parse_record(record, False)"))
    if "error" in process:
        outputs["test_time"] = outputs["augment"] = process
        return outputs
    function = process["function"]
    layout = _layout(function, augmented)
    outputs["layout"] = layout
    shaped = images if layout == "hwc" else images.transpose(0, 3, 1, 2)
    outputs["test_time"] = _attempt(lambda: _twice(function, shaped, "preprocess_image(image, False)"))
    one = augmented if layout == "hwc" else augmented.transpose(2, 0, 1)
    outputs["augment"] = _attempt(lambda: _augment(function, one, [int(s) for s in spec["seeds"]]))
    return outputs


def _twice(function: Any, inputs: np.ndarray, what: str) -> dict[str, Any]:
    """Each input through `function(x, False)`, twice: test-time preprocessing must give the same both times."""
    results = []
    for _ in range(2):
        with student_stage(f"calling {what}"):
            results.append([function(row.copy(), False) for row in inputs])
    return {"first": _stack(results[0], what), "again": _stack(results[1], what)}


def _augment(function: Any, image: np.ndarray, seeds: list[int]) -> dict[str, Any]:
    outputs = []
    with student_stage("calling preprocess_image(image, True)"):
        for seed in seeds:
            _seed(seed)
            outputs.append(function(image.copy(), True))
    return _stack(outputs, "preprocess_image(image, True)")


def _layout(function: Any, image: np.ndarray) -> str:
    """ "hwc" (the starter's [32, 32, 3]) unless the function only works on [3, 32, 32] images."""
    for layout, shaped in (("hwc", image), ("chw", image.transpose(2, 0, 1))):
        try:
            _seed(0)
            out = _to_numpy(function(shaped.copy(), True), "preprocess_image")
        except StageTimeout:
            raise
        except BaseException:  # any failure only means: not this layout
            continue
        if out.ndim == 3 and out.shape[0 if layout == "chw" else 2] == 3:
            return layout
    return "hwc"


# ---------------------------------------------------------------------------------------------------- (a)


def stage_data_reader(code_dir: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """load_data(data_dir) on the grader's small CIFAR-10 folder; the train/validation split on the grader's arrays."""
    module = _import(code_dir, spec["module"])
    load = _function(module, spec["function"])
    outputs: dict[str, Any] = {"load": _attempt(lambda: _load(load, spec["data_dir"]))}
    split = next((name for name in spec.get("split_functions", []) if callable(getattr(module, name, None))), None)
    if split is not None:
        outputs["split"] = _attempt(lambda: _split(_function(module, split), split, spec))
    return outputs


def _load(load: Any, data_dir: str) -> dict[str, Any]:
    with student_stage(f"calling load_data({data_dir!r})"):
        returned = load(data_dir)
    if not isinstance(returned, tuple | list) or len(returned) != 4:
        got = f"{type(returned).__name__} of {len(returned)}" if isinstance(returned, tuple | list) else "one value"
        raise HarnessError(
            "interface", "load_data", f"load_data returned {got}; expected x_train, y_train, x_test, y_test"
        )
    names = ("x_train", "y_train", "x_test", "y_test")
    arrays = [
        encode(value, f"load_data's {name}", MAX_DATA_VALUES) for name, value in zip(names, returned, strict=True)
    ]
    return {"arrays": arrays}


def _split(function: Any, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    x = _read_u8(spec["x_train"], (spec["train_count"], 3072)).astype(np.float32)
    y = np.fromfile(spec["y_train"], dtype=np.uint8, count=int(spec["train_count"])).astype(np.int32)
    try:
        takes_index = "split_index" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_index = False
    with student_stage(f"calling {name}(x_train, y_train)"):
        returned = function(x, y, split_index=int(spec["split_index"])) if takes_index else function(x, y)
    if not isinstance(returned, tuple | list) or len(returned) != 4:
        raise HarnessError("interface", name, f"{name} returned no 4 arrays (x_train, y_train, x_valid, y_valid)")
    arrays = [encode(value, f"{name}'s output {i + 1}", MAX_DATA_VALUES) for i, value in enumerate(returned)]
    return {"function": name, "split_index": int(spec["split_index"]) if takes_index else None, "arrays": arrays}


# ---------------------------------------------------------------------------------------------------- (c)


def stage_network(code_dir: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The network for each (version, size): its parameters' and buffers' names and shapes, and its output."""
    module = _import(code_dir, spec["module"])
    factory = _function(module, spec["factory"])
    inputs = torch.from_numpy(np.fromfile(spec["input"], dtype="<f4").reshape(2, 3, 32, 32).copy())
    return {"builds": [_attempt(lambda args=args: _build(factory, args, inputs)) for args in spec["builds"]]}


def _build(factory: Any, args: list[Any], inputs: torch.Tensor) -> dict[str, Any]:
    shown = ", ".join(repr(a) for a in args)
    with student_stage(f"building ResNet({shown})"):
        torch.manual_seed(0)
        model = factory(*args)
    if not isinstance(model, torch.nn.Module):
        raise HarnessError("interface", "building", f"ResNet({shown}) returned {type(model).__name__}, not a Module")
    with student_stage(f"running ResNet({shown}) on a batch of 2 images"), torch.no_grad():
        output = model.eval()(inputs.clone())
    return {"arguments": args, **_names(model), "output": encode(output, f"ResNet({shown})'s output")}


def _names(model: torch.nn.Module) -> dict[str, Any]:
    parameters = [[name, list(p.shape)] for name, p in list(model.named_parameters())[:MAX_NAMES]]
    state = [[name, list(t.shape)] for name, t in list(model.state_dict().items())[:MAX_NAMES] if hasattr(t, "shape")]
    return {"parameters": parameters, "state_dict": state}


# ---------------------------------------------------------------------------------------------------- (d)


class _Recorder:
    """What the training and testing loop did, seen from hooks on the network and on every optimizer step."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.phase = "setup"
        self.bn: dict[str, dict[str, int]] = {}
        self.steps: list[dict[str, Any]] = []
        self.params = [p for p in network.parameters() if p.requires_grad]
        self.since_step = [torch.zeros_like(p) for p in self.params]
        self.since_start = [torch.zeros_like(p) for p in self.params]
        self.backwards = 0
        self.handles: list[Any] = []
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                self.handles.append(module.register_forward_pre_hook(self._bn))
        for index, parameter in enumerate(self.params):
            self.handles.append(parameter.register_hook(lambda grad, i=index: self._grad(i, grad)))
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self.handles.append(register_optimizer_step_pre_hook(self._step))

    def _bn(self, module: torch.nn.Module, inputs: Any) -> None:
        mode = "train" if module.training else "eval"
        key = f"{mode}_grad" if torch.is_grad_enabled() else f"{mode}_no_grad"
        counts = self.bn.setdefault(self.phase, {})
        counts[key] = counts.get(key, 0) + 1

    def _grad(self, index: int, grad: torch.Tensor) -> None:
        if self.phase == "train":
            self.since_step[index] += grad.detach()
            self.since_start[index] += grad.detach()
            if index == 0:
                self.backwards += 1

    def _step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Compare each parameter's .grad with the gradients of the backward passes since the last step (zeroed
        every step) and since training began (never zeroed): residuals after the best scaling (clipping scales)."""
        if self.phase != "train" or len(self.steps) >= 200:
            return
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        grads, step, start = [], [], []
        for parameter, since_step, since_start in zip(self.params, self.since_step, self.since_start, strict=True):
            if id(parameter) in owned:
                grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
                grads.append(grad.detach().flatten())
                step.append(since_step.flatten())
                start.append(since_start.flatten())
        record: dict[str, Any] = {"backwards": self.backwards, "parameters": len(grads)}
        if grads:
            grad, since_step_all, since_start_all = torch.cat(grads), torch.cat(step), torch.cat(start)
            record["grad_norm"] = float(grad.norm())
            record["since_step_norm"] = float(since_step_all.norm())
            record["residual_since_step"] = _residual(grad, since_step_all)
            record["residual_since_start"] = _residual(grad, since_start_all)
        self.steps.append(record)
        for tensor in self.since_step:
            tensor.zero_()
        self.backwards = 0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _residual(grad: torch.Tensor, reference: torch.Tensor) -> float:
    """‖grad − s·reference‖ / ‖grad‖ for the best s ≥ 0 (1.0 when grad is zero)."""
    grad, reference = grad.double(), reference.double()
    norm = float(grad.norm())
    if norm == 0:
        return 1.0
    denominator = float(reference.dot(reference))
    scale = max(float(grad.dot(reference)) / denominator, 0.0) if denominator > 0 else 0.0
    return float((grad - scale * reference).norm()) / norm


def stage_training(code_dir: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The student's Model class trains a tiny network for a few epochs and tests it, under hooks."""
    module = _import(code_dir, spec["module"])
    model_class = _function(module, spec["class"])
    config = _config(code_dir, spec)
    count = int(spec["records"])
    x_train = _read_u8(spec["x_train"], (count, 3072)).astype(np.float32)
    y_train = np.fromfile(spec["y_train"], dtype=np.uint8, count=count).astype(np.int32)
    reference_batch = torch.from_numpy(np.fromfile(spec["batch"], dtype="<f4").reshape(count, 3, 32, 32).copy())
    _seed(0)
    with student_stage(f"creating {spec['class']}(config)"):
        model = model_class(config)
    network = _network(model, spec.get("network_attribute", "network"))
    recorder = _Recorder(network)
    batch, batch_source = _student_batch(code_dir, spec, x_train, reference_batch)
    outputs: dict[str, Any] = {"config": _shown_config(config), "batch": batch_source}
    outputs["before"] = encode(_logits(network, batch, recorder), "the network's output before training")
    weights_before = [p.detach().clone() for p in recorder.params]
    recorder.phase = "train"
    epochs = int(spec["epochs"])
    try:
        with student_stage(f"calling {spec['train']}(x_train, y_train, {epochs})"):
            getattr(model, spec["train"])(x_train, y_train, epochs)
    except HarnessError as exc:
        outputs["train_error"] = exc.to_json()
    recorder.phase = "measure"
    outputs["after"] = encode(_logits(network, batch, recorder), "the network's output after training")
    changed = [float((p.detach() - w).abs().max()) for p, w in zip(recorder.params, weights_before, strict=True)]
    outputs["weights_changed"] = max(changed, default=0.0)
    outputs["steps"] = recorder.steps
    outputs["checkpoints"] = _checkpoints(Path(str(config.modeldir)))
    outputs["state_dict"] = _names(network)["state_dict"]
    recorder.phase = "test"
    checkpoint_number = epochs
    try:
        with student_stage(f"calling {spec['test']}(x_test, y_test, [{checkpoint_number}])"):
            getattr(model, spec["test"])(x_train[:count], y_train[:count], [checkpoint_number])
    except HarnessError as exc:
        outputs["test_error"] = exc.to_json()
    outputs["bn"] = recorder.bn
    recorder.remove()
    return outputs


def _config(code_dir: str, spec: Mapping[str, Any]) -> Any:
    """The student's own configuration (main.configure() with no command-line arguments, so their defaults and any
    options they added), else the rubric's defaults; then the rubric's overrides for a tiny, quick run."""
    import argparse

    config = None
    source = spec.get("config") or {}
    if source.get("module"):
        saved = sys.argv
        try:
            sys.argv = [f"{source['module']}.py"]
            main = _import(code_dir, source["module"])
            configure = getattr(main, source.get("function", "configure"), None)
            if callable(configure):
                with student_stage(f"calling {source['module']}.{source.get('function', 'configure')}()"):
                    config = configure()
        except HarnessError:
            config = None
        finally:
            sys.argv = saved
    if config is None or not hasattr(config, "__dict__"):
        config = argparse.Namespace(**dict(spec.get("defaults", {})))
    for key, value in dict(spec.get("overrides", {})).items():
        setattr(config, key, value)
    return config


def _shown_config(config: Any) -> dict[str, Any]:
    shown = {}
    for key, value in list(vars(config).items())[:50]:
        if isinstance(value, bool | int | float | str) or value is None:
            shown[str(key)[:60]] = value if not isinstance(value, str) else value[:200]
    return shown


def _network(model: Any, attribute: str) -> torch.nn.Module:
    found = getattr(model, attribute, None)
    if isinstance(found, torch.nn.Module):
        return found
    modules = [value for value in vars(model).get("_modules", {}).values() if isinstance(value, torch.nn.Module)]
    modules += [value for value in vars(model).values() if isinstance(value, torch.nn.Module)]
    if modules:
        return modules[0]
    if isinstance(model, torch.nn.Module):
        return model
    raise HarnessError("interface", "finding the network", f"the model has no network attribute {attribute!r}")


def _student_batch(
    code_dir: str, spec: Mapping[str, Any], x_train: np.ndarray, reference: torch.Tensor
) -> tuple[torch.Tensor, str]:
    """The training records through the student's own parse_record(record, False), as their network sees test
    images; the grader's per-image standardised batch when that does not work."""
    try:
        module = _import(code_dir, spec.get("preprocess_module", "ImageUtils"))
        parse = _function(module, spec.get("parse_record", "parse_record"))
        with student_stage("calling parse_record(record, False)"):
            batch = np.stack([np.asarray(parse(row.copy(), False), dtype=np.float32) for row in x_train])
        if batch.shape == tuple(reference.shape) and np.isfinite(batch).all():
            return torch.from_numpy(batch), "parse_record"
    except StageTimeout:
        raise
    except BaseException:  # their parse_record is judged elsewhere; here the grader's batch stands in
        pass
    return reference, "reference"


def _logits(network: torch.nn.Module, batch: torch.Tensor, recorder: _Recorder) -> torch.Tensor:
    """The network's output on `batch` in training mode (batch statistics, as the loss it minimises is computed),
    leaving its weights, running statistics and modes as they were."""
    phase, recorder.phase = recorder.phase, "measure"
    state = copy.deepcopy(network.state_dict())
    modes = {module: module.training for module in network.modules()}
    try:
        with student_stage("running the network on the training batch"), torch.no_grad():
            network.train()
            return network(batch.clone())
    finally:
        network.load_state_dict(state)
        for module, training in modes.items():
            module.training = training
        recorder.phase = phase


def _checkpoints(folder: Path) -> dict[str, Any]:
    """The files the loop saved under config.modeldir, and the newest one's bytes (for the grader to read)."""
    try:
        files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (p.stat().st_mtime, p.name))
    except OSError:
        files = []
    listed = [{"name": str(p.relative_to(folder))[:200], "size": p.stat().st_size} for p in files[-50:]]
    found: dict[str, Any] = {"folder": str(folder), "files": listed}
    if files and files[-1].stat().st_size <= MAX_CHECKPOINT_BYTES:
        found["newest"] = listed[-1]["name"]
        found["data"] = base64.b64encode(files[-1].read_bytes()).decode("ascii")
    return found


STAGES: dict[str, Callable[[str, Mapping[str, Any]], dict[str, Any]]] = {
    "preprocessing": stage_preprocessing,
    "data_reader": stage_data_reader,
    "network": stage_network,
    "training": stage_training,
}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
