"""A client of the public REST API for students: `grader submit` and `grader status`.

It speaks HTTP and the API's JSON only (README, "REST API"): nothing here imports the service's layers (api,
services, db), so it runs on a student's laptop against a remote server. Where to connect comes from, in this
order: the command line, the environment (`GRADER_SERVER`, `GRADER_TOKEN`), a TOML file with `server` and
`token` (`GRADER_CONFIG`, else `$XDG_CONFIG_HOME/grader/config.toml`, else `~/.config/grader/config.toml`).
The token is a password: no message, progress line or repr ever shows it.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import quote

import httpx

from grader.errors import GraderError, InputError
from grader.report_text import progress_bar, render_report_json

ENV_SERVER = "GRADER_SERVER"
ENV_TOKEN = "GRADER_TOKEN"
ENV_CONFIG = "GRADER_CONFIG"
CONFIG_KEYS = ("server", "token")
API_PREFIX = "/api/v1"
FINAL_STATUSES = frozenset({"graded", "failed"})
REQUEST_TIMEOUT_S = 60.0
"""Per network operation (connect, one read, one chunk written), not per request: a large upload takes longer."""
FIRST_POLL_S = 1.0
MAX_POLL_S = 10.0
"""Polling starts fast (an answers-only sheet grades in seconds) and slows down for checkpoint evaluations."""
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
"""Answers worth waiting out while polling (rate limit, a restarting server); anything else ends the wait."""


class ClientError(GraderError):
    """The server could not be reached, refused a request, or did not finish in time; the message says what to do."""


class ApiError(ClientError):
    """The server answered with an error (`{"error": {"code", "message", "field"}}`)."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.field = field
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True)
class Connection:
    """Where to send requests, the token, and where each came from (named in messages instead of the token)."""

    server: str
    token: str = field(repr=False)
    server_source: str
    token_source: str


# --- where to connect -----------------------------------------------------------------------------------------


def config_path(environ: Mapping[str, str]) -> Path:
    if explicit := environ.get(ENV_CONFIG):
        return Path(explicit).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "grader" / "config.toml"


def resolve_connection(server: str | None, token: str | None, environ: Mapping[str, str] = os.environ) -> Connection:
    """The command line wins over the environment, the environment over the config file (read only if needed)."""
    found: dict[str, tuple[str, str]] = {}
    for key, given, variable in (("server", server, ENV_SERVER), ("token", token, ENV_TOKEN)):
        if given:
            found[key] = (given, f"--{key}")
        elif environ.get(variable):
            found[key] = (environ[variable], variable)
    path = config_path(environ)
    if len(found) < len(CONFIG_KEYS) or ENV_CONFIG in environ:
        config = read_config(path, explicit=ENV_CONFIG in environ, token_needed="token" not in found)
        for key, value in config.items():
            found.setdefault(key, (value, f"{key} in {path}"))
    for key, variable in (("server", ENV_SERVER), ("token", ENV_TOKEN)):
        if key not in found:
            raise InputError(f'no {key} given: pass --{key}, set {variable}, or put {key} = "..." in {path}')
    (server_url, server_source), (secret, token_source) = found["server"], found["token"]
    return Connection(
        server=_base_url(server_url, server_source),
        token=secret.strip(),
        server_source=server_source,
        token_source=token_source,
    )


def read_config(path: Path, *, explicit: bool, token_needed: bool) -> dict[str, str]:
    """The config file's `server` and `token`; a token in a file other users can read or change is refused.

    A file others can change could point `server` at their machine and collect the token, so the check covers
    writing too. When the token comes from elsewhere the file's token is not used, and a warning suffices.
    """
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = tomllib.load(handle)
    except FileNotFoundError:
        if explicit:
            raise InputError(f"{ENV_CONFIG} names {path}, which does not exist", field=ENV_CONFIG) from None
        return {}
    except OSError as exc:
        raise InputError(f"cannot read the config file {path}: {exc.strerror}", field=ENV_CONFIG) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the config file {path} is not valid TOML: {exc}", field=ENV_CONFIG) from exc
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r} in the config file {path}; expected {' and '.join(CONFIG_KEYS)}",
            field=ENV_CONFIG,
        )
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{key} in the config file {path} must be a non-empty string", field=ENV_CONFIG)
    if "token" in data and os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        permissions = f"{mode & 0o777:03o}"
        problem = f"the config file {path} holds a token but other users can read or change it (mode {permissions})"
        if token_needed:
            raise InputError(f"{problem}; make it yours alone: chmod 600 {path}", field=ENV_CONFIG)
        print(f"warning: {problem}; chmod 600 {path}", file=sys.stderr)
    return dict(data)


def _base_url(url: str, source: str) -> str:
    base = url.strip().rstrip("/").removesuffix(API_PREFIX)
    if not base.startswith(("http://", "https://")):
        raise InputError(f"the server must be an http:// or https:// URL, got {url!r} ({source})", field="--server")
    return base


# --- requests ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """One multipart file part: the API's field name, the file name sent, and the content (a path or bytes)."""

    field: str
    name: str
    content: Path | bytes

    def open(self) -> IO[bytes]:
        if isinstance(self.content, bytes):
            return io.BytesIO(self.content)
        try:
            return self.content.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read {self.content}: {exc.strerror}", field=self.field) from exc


ProgressCallback = Callable[[int, int], None]
"""Called with (bytes sent, bytes in the whole request) while an upload streams out."""


class _CountingStream(httpx.SyncByteStream):
    """The request body as httpx renders it, reporting each chunk as it is handed to the connection."""

    def __init__(self, inner: httpx.SyncByteStream, total: int, report: ProgressCallback) -> None:
        self._inner, self._total, self._report = inner, total, report

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self._inner:
            yield chunk
            sent += len(chunk)
            self._report(sent, self._total)


class GraderClient:
    """The REST API's student endpoints, with the API's errors turned into `ApiError` and network ones into
    `ClientError`, each with a message a student can act on."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._http = httpx.Client(
            base_url=connection.server + API_PREFIX,
            headers={"Authorization": f"Bearer {connection.token}", "Accept": "application/json"},
            timeout=REQUEST_TIMEOUT_S,
        )

    def __enter__(self) -> GraderClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def submit(self, assignment: str, uploads: Sequence[Upload], progress: ProgressCallback | None = None) -> dict:
        """POST the multipart form; the answer: `{"id", "status", "status_url"}`."""
        handles = [upload.open() for upload in uploads]
        try:
            files = [(u.field, (u.name, handle)) for u, handle in zip(uploads, handles, strict=True)]
            path = f"/assignments/{quote(assignment, safe='')}/submissions"
            request = self._http.build_request("POST", path, files=files)
            if progress is not None and isinstance(request.stream, httpx.SyncByteStream):
                total = int(request.headers.get("Content-Length", 0))
                request.stream = _CountingStream(request.stream, total, progress)
            return self._send(request)
        finally:
            for handle in handles:
                handle.close()

    def submission(self, submission_id: str) -> dict:
        return self._send(self._http.build_request("GET", f"/submissions/{quote(submission_id, safe='')}"))

    def assignments(self) -> list[dict]:
        return self._send(self._http.build_request("GET", "/assignments"))  # type: ignore[return-value]

    def _send(self, request: httpx.Request) -> Any:
        server = self.connection.server
        try:
            response = self._http.send(request)
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot reach the grader at {server} ({exc}); check the server address "
                f"({self.connection.server_source}) and your network"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the grader at {server} did not answer within {REQUEST_TIMEOUT_S:g} s") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"the request to {server} failed: {exc}") from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ClientError(f"{server} answered {response.status_code} with no JSON: is it a grader?") from None
        raise self._error(response)

    def _error(self, response: httpx.Response) -> ApiError:
        status, (message, problem_field) = response.status_code, _problem(response)
        where = f"{problem_field}: " if problem_field and not message.startswith(problem_field) else ""
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if status == 401:
            text = (
                f"the server refused your token (401: {message}); check the token "
                f"({self.connection.token_source}) or ask your instructor for a new one"
            )
        elif status == 403:
            text = f"not allowed (403): {message}"
        elif status == 404:
            text = f"not found (404): {message}"
        elif status == 413:
            text = f"too large (413): {where}{message}"
        elif status == 422:
            text = f"the server refused the submission (422): {where}{message}"
        elif status == 429:
            text = f"too many requests (429): {message}; {_when(retry_after)}"
        elif status >= 500:
            text = f"the grader had a problem ({status}): {message}; try again later"
        else:
            text = f"the server answered {status}: {where}{message}"
        return ApiError(status, text, field=problem_field, retry_after=retry_after)


def _problem(response: httpx.Response) -> tuple[str, str | None]:
    """The API's `{"error": {"message", "field"}}`, or the start of whatever else came back (a proxy's page)."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            field = error.get("field")
            return error["message"], field if isinstance(field, str) else None
    except (ValueError, AttributeError):
        pass
    return (response.text.strip()[:200] or response.reason_phrase), None


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds: either form HTTP allows (a number of seconds, or a date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _when(retry_after: float | None) -> str:
    if retry_after is None:
        return "try again later"
    at = datetime.now().astimezone() + timedelta(seconds=retry_after)
    return f"try again in {retry_after:.0f} s (at {at:%H:%M:%S})"


# --- what gets uploaded --------------------------------------------------------------------------------------


def submission_uploads(
    answers: Path, checkpoints: Mapping[str, Path], code: Mapping[str, Path], code_folder: Path | None = None
) -> list[Upload]:
    """The form fields the API expects: `answers`, `v1`/`v2` (checkpoints), `v1_code`/`v2_code` (one zip each: the
    code for that checkpoint), `code` (one zip: the whole code folder, for the code checks)."""
    uploads = [Upload("answers", answers.name, answers)]
    uploads += [Upload(label, path.name, path) for label, path in sorted(checkpoints.items())]
    code_fields = [(f"{label}_code", path) for label, path in sorted(code.items())]
    for name, path in [*code_fields, *([("code", code_folder)] if code_folder is not None else [])]:
        if path.is_dir():
            # a folder goes as one zip of its .py files, checked as the server will check it (links, sizes, names)
            uploads.append(Upload(name, f"{path.resolve().name or 'code'}.zip", _zip_folder(path, name)))
        else:
            uploads.append(Upload(name, path.name, path))
    return uploads


def _zip_folder(folder: Path, field: str) -> bytes:
    from grader.sandbox.archive import read_code_dir

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in read_code_dir(folder, field=field):
            archive.writestr(name, data)
    return buffer.getvalue()


def assignment_for(answers: Path, client: GraderClient) -> str:
    """The sheet's `assignment:`, else the server's only assignment; otherwise the student must say which."""
    from grader.answers.sheet import parse_answer_sheet

    try:
        data = answers.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {answers}: {exc.strerror}", field="--answers") from exc
    named = parse_answer_sheet(data, filename=answers.name, max_bytes=max(len(data), 1)).get("assignment")
    if named:
        return str(named)
    ids = [item["id"] for item in client.assignments()]
    if len(ids) == 1:
        return ids[0]
    raise InputError(
        f"the sheet names no assignment; add 'assignment: ...' to it or pass --assignment (one of: {', '.join(ids)})",
        field="--assignment",
    )


# --- waiting and printing ------------------------------------------------------------------------------------


class WaitTimeout(ClientError):
    """The submission was not graded within --timeout (it goes on on the server)."""


def wait_for_result(
    client: GraderClient, submission_id: str, *, timeout_s: float, on_status: Callable[[dict], None]
) -> dict:
    """Poll until the submission is graded or failed; a rate limit or a restarting server is waited out (the
    grading goes on on the server whatever happens to this connection)."""
    deadline = time.monotonic() + timeout_s
    interval = FIRST_POLL_S
    last: dict = {}
    while True:
        pause = interval
        try:
            last = client.submission(submission_id)
        except ApiError as exc:
            if exc.status not in TRANSIENT_STATUSES or time.monotonic() >= deadline:
                raise
            pause = max(interval, exc.retry_after or 0.0)
        except ClientError:
            if time.monotonic() >= deadline:  # unreachable for a moment (a restart): tried again until the deadline
                raise
        else:
            on_status(last)
            if last.get("status") in FINAL_STATUSES:
                return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"submission {submission_id} is still {last.get('status', 'unknown')} after {timeout_s:g} s; "
                f"it goes on on the server: check it later with `grader status {submission_id}`"
            )
        time.sleep(min(pause, remaining))
        interval = min(interval * 1.5, MAX_POLL_S)


def render_submission(body: Mapping[str, Any]) -> str:
    """What a student reads: the state, and once graded the same table `grader grade` prints (as the API shows it)."""
    head = f"submission {body['id']} ({body['assignment']}, {body['user']}): {body['status']}"
    if body.get("detail"):
        head += f" — {body['detail']}"
    if body["status"] != "graded" or not body.get("parts"):
        return head
    lines = [head, "", render_report_json(body)]
    if not body.get("released") and any(part.get("points") is None for part in body["parts"]):
        lines.append("grades are not released yet: parts shown with ? points are not counted in this score")
    return "\n".join(lines)


class Progress:
    """Progress on stderr: redrawn in place on a terminal, a plain line per step otherwise (logs, CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._drawn = False
        self._shown_percent = -1
        self._last_status: tuple[str, str] | None = None
        self._started = time.monotonic()

    def upload_started(self, uploads: Sequence[Upload], server: str) -> None:
        if not self.tty:
            self._line(f"uploading {', '.join(u.field for u in uploads)} to {server}")

    def upload(self, sent: int, total: int) -> None:
        if not self.tty or not total:
            return
        percent = 100 * sent // total
        if percent != self._shown_percent:  # one redraw per percent, not per 64 KiB chunk
            self._shown_percent = percent
            self._redraw(f"uploading {progress_bar(sent, total)} {_size(sent)} / {_size(total)} ({percent} %)")

    def waiting(self, submission_id: str, timeout_s: float) -> None:
        self._started = time.monotonic()
        if not self.tty:
            self._line(f"submitted {submission_id}; waiting for the grade (at most {timeout_s:g} s)")

    def status(self, body: Mapping[str, Any]) -> None:
        state = (str(body.get("status")), str(body.get("detail") or ""))
        if self.tty:
            waited = time.monotonic() - self._started
            self._redraw(f"waiting: {state[0]}{' — ' + state[1] if state[1] else ''} ({waited:.0f} s)")
        elif state != self._last_status:
            self._line(f"status: {state[0]}{' — ' + state[1] if state[1] else ''}")
        self._last_status = state

    def done(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _redraw(self, text: str) -> None:
        self.stream.write(f"\r\x1b[K{text}")  # \x1b[K clears what a longer earlier line left behind
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        self.done()
        print(text, file=self.stream, flush=True)


def _size(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


# --- the commands --------------------------------------------------------------------------------------------


def run_submit(
    *,
    server: str | None,
    token: str | None,
    answers: Path,
    checkpoints: Mapping[str, Path],
    code: Mapping[str, Path],
    code_folder: Path | None = None,
    assignment: str | None,
    wait: bool,
    timeout_s: float,
    as_json: bool,
) -> int:
    """`grader submit`: upload, then (unless --no-wait) wait and print the graded table; 0 once graded."""
    if timeout_s <= 0:
        raise InputError("--timeout must be a positive number of seconds", field="--timeout")
    connection = resolve_connection(server, token)
    uploads = submission_uploads(answers, checkpoints, code, code_folder)
    progress = Progress()
    with GraderClient(connection) as client:
        assignment = assignment or assignment_for(answers, client)
        progress.upload_started(uploads, connection.server)
        try:
            accepted = client.submit(assignment, uploads, progress=progress.upload)
        finally:
            progress.done()
        if not wait:
            if as_json:
                print(json.dumps(accepted, indent=2))
            else:
                print(f"submitted {accepted['id']} (status: {accepted['status']})")
                print(f"check it with: {_status_hint(connection, accepted['id'])}")
            return 0
        progress.waiting(accepted["id"], timeout_s)
        try:
            body = wait_for_result(client, accepted["id"], timeout_s=timeout_s, on_status=progress.status)
        finally:
            progress.done()
    return _print_submission(body, as_json)


def run_status(*, server: str | None, token: str | None, submission_id: str, as_json: bool) -> int:
    """`grader status`: the submission as the API shows it now; 1 when its grading failed."""
    with GraderClient(resolve_connection(server, token)) as client:
        body = client.submission(submission_id)
    return _print_submission(body, as_json)


def _print_submission(body: Mapping[str, Any], as_json: bool) -> int:
    print(json.dumps(body, indent=2) if as_json else render_submission(body))
    return 1 if body.get("status") == "failed" else 0


def _status_hint(connection: Connection, submission_id: str) -> str:
    # the options only when they were typed on the command line (env and config file still hold the rest);
    # the token as a placeholder, never its value
    server = f" --server {connection.server}" if connection.server_source == "--server" else ""
    token = " --token TOKEN" if connection.token_source == "--token" else ""
    return f"grader status {submission_id}{server}{token}"
