"""Read ``multipart/form-data`` uploads into memory, never onto the disk.

Why not ``await request.form()``: Starlette's ``MultiPartParser`` writes every file part
into a ``tempfile.SpooledTemporaryFile(max_size=1 MiB)``, so any upload over 1 MiB rolls
over to a real file in the temp folder. Here the body is streamed through
python-multipart's callback parser into ``bytearray`` buffers, and every limit (bytes per
file, number of files, total body) is enforced while streaming: an oversized upload is
refused as soon as it crosses the limit, without buffering the rest of it.

Memory: with a :class:`~aigi.serve.memory.Reservation`, the body is paid for before it is
read (its ``Content-Length``; a body without one pays chunk by chunk), so concurrent
uploads can never hold more than the server's memory budget; each file's buffer becomes
the upload itself (no copy). File names keep every byte (:mod:`aigi.data.names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..data.names import name_to_text
from .errors import ApiError
from .memory import MiB, Reservation

#: non-file form fields are tiny by nature (none is used today); cap them hard
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 32


@dataclass
class Upload:
    """One uploaded file, held in memory; ``filename`` in the text form of :mod:`aigi.data.names`."""

    filename: str
    content_type: str
    data: bytes | bytearray


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    buf: bytearray = field(default_factory=bytearray)


def _too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


async def read_uploads(
    request: Request,
    *,
    field_name: str = "files",
    max_files: int,
    max_file_bytes: int,
    max_body_bytes: int,
    reservation: Reservation | None = None,
) -> list[Upload]:
    """The files of field ``field_name`` in upload order; an :class:`ApiError` on any violation.

    Errors: 415 when the body is not multipart/form-data, 400 when it is malformed, 413 when
    a file, the file count or the whole body is over its limit, 422 when a file comes in
    another field or no file was sent. With ``reservation``, the declared body size is
    reserved before reading (and a body without ``Content-Length`` as it arrives);
    :class:`~aigi.serve.batching.Overloaded` (503) when the memory budget is spent.
    """
    ctype_raw = request.headers.get("content-type", "")
    ctype, params = parse_options_header(ctype_raw)
    if ctype != b"multipart/form-data":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send images as multipart/form-data in the field '{field_name}' "
            f"(got Content-Type {ctype_raw or 'none'!r})",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data Content-Type has no boundary")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "bad_request", f"invalid Content-Length {length!r}") from None
        if declared < 0:
            raise ApiError(400, "bad_request", f"invalid Content-Length {length!r}")
        if declared > max_body_bytes:
            raise _too_large(
                f"request body of {declared} bytes exceeds the limit of {max_body_bytes} bytes "
                f"(max_images x max_upload_bytes plus headers)"
            )
        if reservation is not None:
            reservation.grow(declared, f"a request body of {declared} bytes")

    uploads: list[Upload] = []
    part = _Part()
    header_name = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    n_fields = 0
    ended: list[bool] = []

    def on_part_begin() -> None:
        nonlocal part, headers
        part = _Part()
        headers = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_name).lower().strip()] = bytes(header_value).strip()
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal n_fields
        _, opts = parse_options_header(headers.get(b"content-disposition", b""))
        if b"name" not in opts:
            raise ApiError(400, "bad_request", "a multipart part has no Content-Disposition name")
        part.name = opts[b"name"].decode("utf-8", "replace")
        if b"filename" in opts:
            part.filename = name_to_text(opts[b"filename"])  # every byte kept, printable
            part.content_type = headers.get(b"content-type", b"").decode("latin-1")
            if part.name != field_name:
                raise ApiError(
                    422,
                    "unprocessable",
                    f"file {part.filename!r} was sent in the field {part.name!r}; "
                    f"send images in the field '{field_name}'",
                )
            if len(uploads) + 1 > max_files:
                raise _too_large(f"too many files: at most {max_files} per request")
        else:
            n_fields += 1
            if n_fields > _MAX_FIELDS:
                raise _too_large(f"too many form fields (at most {_MAX_FIELDS})")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part.buf.extend(data[start:end])
        if part.filename is not None:
            if len(part.buf) > max_file_bytes:
                raise _too_large(
                    f"file {part.filename!r} is larger than the limit of {max_file_bytes} bytes "
                    "(max_upload_bytes)"
                )
        elif len(part.buf) > _MAX_FIELD_BYTES:
            raise _too_large(f"form field {part.name!r} is larger than {_MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        if part.filename is not None:
            uploads.append(Upload(part.filename, part.content_type, part.buf))  # the buffer itself, no copy
        part.buf = bytearray()

    def on_end() -> None:
        ended.append(True)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_end": on_end,
        },
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body_bytes:
                raise _too_large(f"request body exceeds the limit of {max_body_bytes} bytes")
            if reservation is not None and received > reservation.held:  # no (or a short) Content-Length
                step = min(max(MiB, received - reservation.held), max_body_bytes - reservation.held)
                reservation.grow(step, "a request body without Content-Length")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as err:
        raise ApiError(400, "bad_request", f"malformed multipart body: {err}") from None
    if not ended:
        raise ApiError(400, "bad_request", "malformed multipart body: it ends before its closing boundary")
    if not uploads:
        raise ApiError(422, "unprocessable", f"no files: send one or more images in the field '{field_name}'")
    return uploads
