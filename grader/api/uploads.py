"""Submission uploads read as the body streams in, each file held to its field's size limit as it arrives.

Starlette's own form parsing writes every part to a temporary file before the route sees any of it, so a
per-file limit checked afterwards still lets one part fill the disk up to the whole-request limit. Here
python-multipart's streaming parser hands over each part while it arrives: a part is refused (413) at the chunk
that takes it past its field's limit, and an unknown, repeated or non-file field (422) at its headers, before its
data is read. The form read this way is then given to FastAPI in place of its own, so the route keeps its File
parameters, their validation and their OpenAPI description.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Coroutine, Generator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from grader.api.deps import DatabaseRoute
from grader.errors import InputError, UploadTooLarge
from grader.settings import Settings, get_settings

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FILES = 1000
"""Parts in one request, as many as Starlette allows: the code fields repeat once per .py file."""
MAX_PART_HEADER_BYTES = 16 * 1024
"""Header bytes of one part; older python-multipart releases keep no limit of their own on them."""
SPOOL_MEMORY_BYTES = 1024 * 1024
"""A file part stays in memory up to this size, then moves to a temporary file (Starlette's choice too)."""


@dataclass(frozen=True, slots=True)
class FileField:
    """One upload field: the size limit of each file sent in it, and whether it may be sent more than once."""

    max_bytes: int
    repeatable: bool = False


def submission_fields(settings: Settings) -> dict[str, FileField]:
    """The fields of a submission upload, in the order error messages list them."""
    code = FileField(settings.max_code_file_bytes, repeatable=True)
    return {
        "answers": FileField(settings.max_answers_bytes),
        "v1": FileField(settings.max_checkpoint_bytes),
        "v2": FileField(settings.max_checkpoint_bytes),
        "v1_code": code,
        "v2_code": code,
        "code": code,
    }


def describe_limit(max_bytes: int) -> str:
    """'268435456 bytes (256 MiB)': exact for the client, readable for the student."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if max_bytes >= size:
            return f"{max_bytes} bytes ({max_bytes / size:.4g} {unit})"
    return f"{max_bytes} bytes"


async def read_upload_form(request: Request, fields: Mapping[str, FileField]) -> FormData:
    """The request's form, every file part refused as soon as it grows past its field's limit.

    Raises UploadTooLarge (413) or InputError (422) naming the field, or HTTPException (400) for a malformed body;
    the files of a refused form are closed, which deletes them, before the error leaves.
    """
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        return await _read_multipart(request, params, fields)
    if content_type == b"application/x-www-form-urlencoded":
        # Only text fields come this way and none is accepted; Starlette caps each one at 1 MiB while reading.
        form = await request.form()
        seen: list[str] = []
        for name, _ in form.multi_items():
            _check_field(fields, name, is_file=False, seen=seen)
        return form
    return FormData()


async def _read_multipart(request: Request, params: dict[bytes, bytes], fields: Mapping[str, FileField]) -> FormData:
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "Missing boundary in multipart.")
    parts = _Parts(fields, _charset(params))
    received = 0
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                received += len(chunk)
                parser.write(chunk)  # raises at the chunk that crosses a limit, before that chunk is written
                await parts.write_pending()
        parser.finalize()
        # python-multipart's finalize() accepts a body cut short anywhere (its own TODO), so a body sent with a
        # Content-Length smaller than itself would be read as a form of truncated files: the form must be whole.
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) != received:
            raise incomplete_body(f"the request body has {received} bytes, not the {declared} its Content-Length says")
        if not parts.complete:
            raise incomplete_body(
                f"the multipart body ended before its closing boundary '--{boundary.decode('latin-1')}--': "
                "it was cut short, or its Content-Length is smaller than the body"
            )
        await parts.rewind()
    except FormParserError as exc:
        parts.discard()
        raise HTTPException(400, "Invalid multipart data.") from exc
    except BaseException:
        parts.discard()
        raise
    return FormData(parts.items)


def incomplete_body(message: str) -> HTTPException:
    """400 for a body that is not whole; the connection is closed, since where its next request starts is unknown."""
    return HTTPException(400, message, headers={"Connection": "close"})


def _charset(params: dict[bytes, bytes]) -> str:
    try:
        return codecs.lookup(params.get(b"charset", b"utf-8").decode("latin-1")).name
    except LookupError:
        return "latin-1"


def _check_field(fields: Mapping[str, FileField], name: str, *, is_file: bool, seen: list[str]) -> FileField:
    field = fields.get(name)
    if field is None:
        raise InputError(f"unknown form field {name!r}; expected {', '.join(fields)}", field=name)
    if name in seen and not field.repeatable:
        raise InputError(f"form field {name!r} was sent more than once", field=name)
    if not is_file:
        raise InputError(f"form field {name!r} must be a file upload", field=name)
    seen.append(name)
    return field


@dataclass(slots=True)
class _Part:
    name: str
    field: FileField
    upload: UploadFile
    size: int = 0


class _Parts:
    """python-multipart's callbacks, building the form; file data waits in `pending` for an async write.

    The callbacks run inside the parser's synchronous write(), where the event loop must not block on a disk
    write (a part past SPOOL_MEMORY_BYTES is on disk), so the caller writes what they collected after each chunk.
    """

    def __init__(self, fields: Mapping[str, FileField], charset: str) -> None:
        self.fields = fields
        self.charset = charset
        self.items: list[tuple[str, UploadFile]] = []
        self.pending: list[tuple[UploadFile, bytes]] = []
        self.complete = False
        """The closing boundary was read."""
        self._seen: list[str] = []
        self._part: _Part | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._header_name = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        if len(self.items) >= MAX_FILES:
            raise InputError(f"too many files in one request: at most {MAX_FILES}")
        self._part = None
        self._headers = []
        self._header_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((bytes(self._header_name).lower(), bytes(self._header_value)))
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition = next((value for name, value in self._headers if name == b"content-disposition"), None)
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise HTTPException(400, 'The Content-Disposition header field "name" must be provided.')
        name = self._decode(options[b"name"])
        field = _check_field(self.fields, name, is_file=b"filename" in options, seen=self._seen)
        spool = SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115  # closed with the form, or by discard()
        upload = UploadFile(
            spool,  # type: ignore[arg-type]
            size=0,
            filename=self._decode(options[b"filename"]),
            headers=Headers(raw=self._headers),
        )
        self.items.append((name, upload))
        self._part = _Part(name, field, upload)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:  # python-multipart finishes a part's headers before its data; never data without them
            raise HTTPException(400, "Invalid multipart data.")
        part.size += end - start
        if part.size > part.field.max_bytes:
            raise _too_large(part)
        self.pending.append((part.upload, data[start:end]))

    def on_end(self) -> None:
        self.complete = True

    async def write_pending(self) -> None:
        for upload, data in self.pending:
            await upload.write(data)
        self.pending.clear()

    async def rewind(self) -> None:
        for _, upload in self.items:
            await upload.seek(0)

    def discard(self) -> None:
        self.pending.clear()
        for _, upload in self.items:
            upload.file.close()

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise UploadTooLarge(
                f"the headers of a multipart part are larger than the limit of {describe_limit(MAX_PART_HEADER_BYTES)}"
            )

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def _too_large(part: _Part) -> UploadTooLarge:
    # A repeatable field carries several files: name the one that is too large as well as the field.
    what = f"file {part.upload.filename!r} in {part.name!r}" if part.field.repeatable else f"file {part.name!r}"
    return UploadTooLarge(f"{what} is larger than the limit of {describe_limit(part.field.max_bytes)}", field=part.name)


class _FormReady:
    """What Request.form() returns for a form read already: awaitable, or an async context that closes it."""

    def __init__(self, form: FormData) -> None:
        self.form = form

    def __await__(self) -> Generator[Any, None, FormData]:
        return self._get().__await__()

    async def _get(self) -> FormData:
        return self.form

    async def __aenter__(self) -> FormData:
        return self.form

    async def __aexit__(self, *exc_info: object) -> None:
        await self.form.close()


class _FormReadRequest(Request):
    """The request FastAPI is handed: its form is the one read under our limits, whatever limits FastAPI asks."""

    def __init__(self, request: Request, form: FormData) -> None:
        super().__init__(request.scope, request.receive)
        self._form_read = form

    def form(self, **_limits: Any) -> _FormReady:  # type: ignore[override]
        return _FormReady(self._form_read)


class SubmissionUploadRoute(DatabaseRoute):
    """A route whose multipart body is read by `read_upload_form` under the submission fields' limits.

    The form is read before FastAPI's handler runs, so a refusal reaches the app's error handlers as it is
    raised; inside FastAPI's own body reading any error would become a generic 400.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def read_form_then_handle(request: Request) -> Response:
            settings = request.app.dependency_overrides.get(get_settings, get_settings)()
            try:
                form = await read_upload_form(request, submission_fields(settings))
            except ClientDisconnect as exc:
                # Also how BodyLimits cuts off a body too large or too slow; it answers 413 or 408 in our place.
                raise incomplete_body("the request body ended before it was complete") from exc
            try:
                return await handle(_FormReadRequest(request, form))
            finally:
                await form.close()

        return read_form_then_handle
