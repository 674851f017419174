"""Reading an answer sheet (YAML or JSON) into a plain mapping, safely.

The sheet is untrusted: YAML is read with the safe loader, aliases (the "billion laughs" trick) are refused,
and size and nesting depth are bounded before any checker sees the data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from grader.errors import AnswerSheetError

MAX_SHEET_BYTES = 256 * 1024
MAX_DEPTH = 12
MAX_NODES = 20_000
_QUOTE_HINT = " (inside [...] or {...}, quote values that contain { } [ ] or commas, e.g. 'w_1^{11}')"


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (a sheet never needs them; they enable expansion bombs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AnswerSheetError(
                f"YAML aliases (*{event.anchor}) are not allowed in an answer sheet (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)


def parse_answer_sheet(
    data: bytes | str,
    *,
    filename: str | None = None,
    max_bytes: int = MAX_SHEET_BYTES,
) -> dict[str, Any]:
    """Parse the sheet's bytes; JSON when the name ends in .json or the text starts with '{', else YAML."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise AnswerSheetError(f"answer sheet is {len(raw)} bytes; the limit is {max_bytes} bytes", field="answers")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnswerSheetError(
            f"answer sheet is not UTF-8 text (byte {exc.start}); save it as a UTF-8 YAML or JSON file",
            field="answers",
        ) from exc
    if not text.strip():
        raise AnswerSheetError("answer sheet is empty; expected a YAML or JSON mapping", field="answers")
    as_json = (filename or "").lower().endswith(".json") or text.lstrip().startswith("{")
    sheet = _load_json(text) if as_json else _load_yaml(text)
    if not isinstance(sheet, dict):
        raise AnswerSheetError(
            f"answer sheet must be a mapping of question ids (q2: ..., q3: ...), got {type(sheet).__name__}",
            field="answers",
        )
    _check_shape(sheet)
    return sheet


def check_assignment(sheet: Mapping[str, Any], assignment: str) -> None:
    """A sheet that names an assignment must name this one."""
    named = sheet.get("assignment")
    if named is not None and str(named) != assignment:
        raise AnswerSheetError(
            f"answer sheet is for assignment {named!r}, but it was submitted to {assignment!r}",
            field="assignment",
        )


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerSheetError(
            f"answer sheet is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            field="answers",
        ) from exc
    except RecursionError as exc:
        raise AnswerSheetError(f"answer sheet nests deeper than {MAX_DEPTH} levels", field="answers") from exc
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit conversion limit
        raise AnswerSheetError(
            f"answer sheet has a value that cannot be read: {str(exc)[:120]}", field="answers"
        ) from exc


_FAST_LOADER = getattr(yaml, "CSafeLoader", None)
"""libyaml's safe loader, where PyYAML was built with it: the same documents, about ten times faster (a batch
regrade reads every sheet again). Aliases are refused from its event stream before anything is built."""


def _load_yaml(text: str) -> Any:
    try:
        if _FAST_LOADER is None:
            return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass
        for event in yaml.parse(text, Loader=_FAST_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise AnswerSheetError(
                    f"YAML aliases (*{event.anchor}) are not allowed in an answer sheet "
                    f"(line {event.start_mark.line + 1})"
                )
        return yaml.load(text, Loader=_FAST_LOADER)  # CSafeLoader: the safe tags only
    except AnswerSheetError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        hint = _QUOTE_HINT if exc.problem and any(c in exc.problem for c in "{}[],") else ""
        raise AnswerSheetError(f"answer sheet is not valid YAML{where}: {exc.problem}{hint}", field="answers") from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise AnswerSheetError(f"answer sheet is not valid YAML: {exc}", field="answers") from exc
    except ValueError as exc:  # a tagged or implicit value the constructor rejects: 2001-13-45, 5000-digit ints
        raise AnswerSheetError(
            f"answer sheet has a value that cannot be read: {str(exc)[:120]}", field="answers"
        ) from exc


def _check_shape(sheet: dict[str, Any]) -> None:
    """Bound depth and size, and require string keys, so checkers never walk a pathological structure."""
    stack: list[tuple[Any, int, str]] = [(sheet, 1, "")]
    nodes = 0
    while stack:
        node, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise AnswerSheetError(f"answer sheet has more than {MAX_NODES} values", field="answers")
        if depth > MAX_DEPTH:
            raise AnswerSheetError(
                f"answer sheet nests deeper than {MAX_DEPTH} levels at {path or 'the top'}", field=path or None
            )
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    where = f"{path}.{key}" if path else str(key)
                    raise AnswerSheetError(f"keys must be text; {where!r} is a {type(key).__name__}", field=where)
                stack.append((value, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            stack.extend((value, depth + 1, f"{path}[{i}]") for i, value in enumerate(node))
