"""`socialfusion serve`: an HTTP service (FastAPI) and a web page around one SocialFusion model.

Endpoints:
  GET  /          the web page (upload an image or pick an example, draw boxes by kind, pick tasks, see labels
                  and the gaze heatmap)
  GET  /health    liveness, load, the model card's line and any warning (an untrained preset)
  GET  /model_card  the checkpoint's model card (`models.card`), or its absence
  GET  /tasks     task names, classes and the box kinds (and roles) each task reads
  GET  /examples  example scenes drawn by the synthetic painter, with a box of each kind; /examples/NAME.png
  POST /predict   multipart/form-data: `image` (file), `boxes` (JSON list of {xyxy, kind, role, normalized}),
                  `tasks` ("all" or a comma list), `detect` ("true": find the boxes of an image sent without any;
                  501 when the detection extra is not installed) -> JSON results (gaze heatmap as a 64x64 list)
  GET  /docs      OpenAPI documentation; Swagger UI's files come from the fastapi-offline wheel, so it works
                  with no network

Access: with an API key (`create_app(api_key=...)`, `--api-key` or SOCIALFUSION_API_KEY) every request needs
`Authorization: Bearer KEY` or `X-API-Key: KEY` (401 otherwise), except the pages a browser opens by address,
which cannot carry a header and hold no model output: the web page shell (/), /docs, /redoc and their static
files, and /openapi.json (Swagger UI reads it before the key is entered through its Authorize button). `main`
refuses to bind an address other than loopback without a key unless `--insecure` says so.

Bad input always gets a 4xx with {"detail": "..."}: 400 malformed form or boxes JSON, 413 upload too large or
decompression bomb, 415 not multipart / not an image, 422 missing image, corrupt or truncated image, boxes out
of range or impossible, unknown task. Backpressure: at most `max_concurrency` requests run at once (in a
thread pool, the model itself under a lock) and at most `max_queue` more wait; beyond that the answer is 503
with Retry-After, so memory stays bounded (each admitted request holds at most one upload).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import detect as detection
from ..api import BOX_KINDS, PredictInputError, SocialFusion, UntrainedModelWarning, load_image_bytes, result_to_json
from ..core.images import ImageError
from ..detect import EXTRA_HINT as DETECT_HINT
from ..errors import UserError, add_console_options
from ..runtime import THREADS_HELP, parse_threads, resolve_precision
from .examples import example_png, list_examples

log = logging.getLogger("socialfusion.serve")

MB = 1024 * 1024
FORM_SLACK = 256 * 1024  # room for the boxes/tasks fields and the multipart headers, on top of the image
DEFAULT_MAX_BOXES = 32
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # about 7000 x 7000; decoded RGB is 3 bytes per pixel

_STATUS_BY_REASON = {
    "refused as a decompression bomb": 413,
    "not a readable image": 415,
}


class _Gate:
    """Admission control: how many requests are inside (reading, waiting or running); refuse beyond the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.inside = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.inside >= self.limit:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1


API_KEY_ENV = "SOCIALFUSION_API_KEY"
DOCS_STATIC = "/static-offline-docs"
# what a browser opens by address (no header possible) and that holds no model output: open without the key
PUBLIC_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def _presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


class _RequireKey:
    """ASGI middleware: every request but the public pages must present the key (compared in constant time)."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(DOCS_STATIC + "/"):
            return await self.app(scope, receive, send)
        given = _presented_key(scope.get("headers") or [])
        if given is not None and hmac.compare_digest(given.encode(), self.key):
            return await self.app(scope, receive, send)
        detail = "missing API key" if given is None else "wrong API key"
        response = JSONResponse(
            {"detail": f"{detail}: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is on this machine only (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def bind_refusal(host: str, api_key: str | None, insecure: bool) -> str | None:
    """Why `serve` must not start on `host`, or None: beyond loopback, anyone who can reach the port could use the
    model, so it needs a key or an explicit --insecure."""
    if api_key or insecure or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without an API key: anyone on the network could use the service; "
        f"set --api-key (or {API_KEY_ENV}), or pass --insecure to accept that"
    )


def _read_index_html() -> str:
    from importlib import resources

    return resources.files("socialfusion.serve").joinpath("static/index.html").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Service:
    """What the routes share: the model, the limits, admission control and whether detection is installed. One per
    app, held in `app.state.service` and handed to each route by FastAPI's dependency injection (`_service`)."""

    predictor: Any
    max_upload_bytes: int
    max_boxes: int
    max_image_pixels: int | None
    retry_after_s: int
    can_detect: bool
    gate: _Gate  # requests inside (reading, waiting or running): at most max_concurrency + max_queue
    running: threading.BoundedSemaphore  # at most max_concurrency decoded images and inferences at a time
    index_html: str

    @property
    def body_limit(self) -> int:
        return self.max_upload_bytes + FORM_SLACK


async def _service(request: Request) -> Service:  # async: resolved on the event loop, not in the thread pool
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(_service)]


def _fail(status: int, detail: str, headers: dict | None = None):
    raise HTTPException(status_code=status, detail=detail, headers=headers)


router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(service: ServiceDep) -> HTMLResponse:
    csp = (
        "default-src 'self'; img-src 'self' blob: data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'"
    )
    return HTMLResponse(
        service.index_html, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"}
    )


@router.get("/health")
def health(service: ServiceDep) -> dict:
    predictor = service.predictor
    return {
        "status": "ok",
        "model": predictor.name,
        "model_card": predictor.card_summary,
        "warning": predictor.warning,
        "device": str(predictor.device),
        "precision": resolve_precision(predictor.device, predictor.precision),  # which batching bound applies
        "tasks": predictor.task_names,
        "inside": service.gate.inside,
        "capacity": service.gate.limit,
    }


@router.get("/model_card")
def model_card(service: ServiceDep) -> dict:
    predictor = service.predictor
    return {"summary": predictor.card_summary, "warning": predictor.warning, "card": predictor.card}


@router.get("/tasks")
def tasks(service: ServiceDep) -> dict:
    return {
        "tasks": service.predictor.describe_tasks(),
        "max_upload_bytes": service.max_upload_bytes,
        "max_boxes": service.max_boxes,
        "box_kinds": list(BOX_KINDS),
        "detect": service.can_detect,  # whether POST /predict accepts detect=true here
        "roles": {
            "0": "the box of a single-box task, or the first person of a pair",
            "1": "the second person (relation)",
        },
    }


@router.get("/examples")
def examples() -> dict:
    return {"examples": list_examples()}


@router.get("/examples/{name}.png", response_class=Response, responses={200: {"content": {"image/png": {}}}, 404: {}})
def example_image(name: str) -> Response:
    data = example_png(name)
    if data is None:
        _fail(404, f"no example named {name!r}")
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


async def _read_body(request: Request, service: Service) -> bytes:
    limit, max_upload_bytes = service.body_limit, service.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            _fail(400, f"invalid Content-Length header {declared!r}")
        if n > limit:
            _fail(413, f"upload too large: {n} bytes; the limit is {max_upload_bytes} bytes for the image")
    body = bytearray()
    async for chunk in request.stream():  # counted while reading: never more than the limit in memory
        body += chunk
        if len(body) > limit:
            _fail(413, f"upload too large: more than {max_upload_bytes} bytes for the image")
    return bytes(body)


async def _parse_form(request: Request, body: bytes):
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, receive=replay).form(max_files=2, max_fields=8, max_part_size=FORM_SLACK)
    except StarletteHTTPException as err:  # Starlette's multipart errors: 400 with a terse message
        _fail(err.status_code, f"malformed form body: {err.detail}")


def _parse_boxes_field(raw: Any):
    if raw is None:
        return None
    if not isinstance(raw, str):
        _fail(422, "'boxes' must be a text field holding JSON")
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        _fail(400, f"'boxes' is not valid JSON: {err}")
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        _fail(422, f"'boxes' must be a JSON list of box objects, got {type(value).__name__}")
    return value


def _detect_field(raw: Any, service: Service) -> bool:
    raw = raw or "false"
    if not isinstance(raw, str) or raw.strip().lower() not in ("true", "false", "1", "0", "on"):
        _fail(422, "'detect' must be true or false")
    detect = raw.strip().lower() in ("true", "1", "on")
    if detect and not service.can_detect:
        _fail(501, f"box detection is not installed on this server ({DETECT_HINT})")
    return detect


async def _form_inputs(form, service: Service) -> tuple[bytes, str, Any, list[str], bool]:
    """The checked fields of the form: (image bytes, file name, boxes, task names, detect)."""
    upload = form.get("image")
    if upload is None:
        _fail(422, "missing the 'image' file field (send multipart/form-data with the image as a file)")
    if isinstance(upload, str):
        _fail(422, "'image' must be a file upload, not a text field")
    data = await upload.read()
    filename = upload.filename or "upload"
    if len(data) > service.max_upload_bytes:
        _fail(413, f"image too large: {len(data)} bytes; the limit is {service.max_upload_bytes}")
    if not data:
        _fail(422, f"{filename}: the image file is empty (0 bytes)")
    boxes = _parse_boxes_field(form.get("boxes"))
    if boxes is not None and len(boxes) > service.max_boxes:
        _fail(422, f"{len(boxes)} boxes; at most {service.max_boxes} per image")
    tasks_field = form.get("tasks")
    if tasks_field is not None and not isinstance(tasks_field, str):
        _fail(422, "'tasks' must be a text field")
    task_names = service.predictor.resolve_tasks("all" if tasks_field is None else tasks_field)
    return data, filename, boxes, task_names, _detect_field(form.get("detect"), service)


def _run(service: Service, data: bytes, filename: str, boxes: Any, task_names: list[str], detect: bool) -> dict:
    with service.running:  # bounded: at most max_concurrency decoded images and inferences at a time
        t0 = time.perf_counter()
        image = load_image_bytes(data, filename, max_pixels=service.max_image_pixels)
        [result] = service.predictor.predict(image, boxes=boxes, tasks=task_names, detect=detect)
        out = result_to_json(result, heatmap="list", decimals=4)
        out["image"] = filename
        out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out


_PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "the image file"},
                    "boxes": {
                        "type": "string",
                        "description": "JSON list of boxes, each with its kind (face, hand, head, person), e.g. "
                        '[{"xyxy": [10, 20, 110, 140], "kind": "face"}, '
                        '{"xyxy": [150, 90, 190, 140], "kind": "hand"}]; '
                        "each task reads its own kind (relation: "
                        "two person boxes, or the two with role 0 and 1); pixel "
                        'coordinates when any value > 1 unless "normalized" says otherwise; none: the whole image',
                    },
                    "tasks": {
                        "type": "string",
                        "default": "all",
                        "description": '"all" or a comma list, e.g. "lam,gaze"',
                    },
                    "detect": {
                        "type": "string",
                        "enum": ["true", "false"],
                        "default": "false",
                        "description": "true: when no boxes are sent, find them (face, head, hand, person); "
                        'the result\'s boxes carry kind, score and source "detected"',
                    },
                },
            }
        }
    },
}


@router.post(
    "/predict",
    openapi_extra={"requestBody": _PREDICT_BODY},
    responses={400: {}, 413: {}, 415: {}, 422: {}, 503: {}},
)
async def predict(request: Request, service: ServiceDep) -> JSONResponse:
    gate = service.gate
    if not gate.enter():
        _fail(
            503,
            f"busy: {gate.limit} requests are already being served; retry shortly",
            {"Retry-After": str(service.retry_after_s)},
        )
    try:
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            _fail(415, "send multipart/form-data with an 'image' file field (and optional 'boxes' and 'tasks' fields)")
        body = await _read_body(request, service)
        form = await _parse_form(request, body)
        try:
            inputs = await _form_inputs(form, service)
        finally:
            await form.close()
        return JSONResponse(await run_in_threadpool(_run, service, *inputs))
    except ImageError as err:
        _fail(_STATUS_BY_REASON.get(err.reason, 422), str(err))
    except PredictInputError as err:
        _fail(422, str(err))
    finally:
        gate.leave()


async def _unexpected(request: Request, err: Exception):  # a bug, never bad input: log it, answer briefly
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(err).__name__}"}, status_code=500)


def create_app(
    predictor: Any,
    max_upload_bytes: int = 10 * MB,
    max_concurrency: int = 2,
    max_queue: int = 8,
    max_boxes: int = DEFAULT_MAX_BOXES,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    retry_after_s: int = 1,
    api_key: str | None = None,
):
    """The FastAPI app serving `predictor` (a `socialfusion.api.SocialFusion`); with `api_key`, every request but
    the public pages needs it (see the module docstring)."""
    if max_concurrency < 1 or max_queue < 0 or max_upload_bytes < 1:
        raise ValueError("max_concurrency >= 1, max_queue >= 0 and max_upload_bytes >= 1 are required")
    service = Service(
        predictor=predictor,
        max_upload_bytes=max_upload_bytes,
        max_boxes=max_boxes,
        max_image_pixels=max_image_pixels,
        retry_after_s=retry_after_s,
        can_detect=detection.available(),  # checked once: it looks the packages up on disk
        gate=_Gate(max_concurrency + max_queue),
        running=threading.BoundedSemaphore(max_concurrency),
        index_html=_read_index_html(),
    )
    app = FastAPIOffline(
        title="SocialFusion",
        description="Social perception from an image and boxes: looking-at-me, expression, gesture, relation, gaze.",
        version="1",
        static_url=DOCS_STATIC,
    )
    app.state.service = service
    app.state.predictor = predictor
    app.state.gate = service.gate
    if api_key:
        app.add_middleware(_RequireKey, api_key=api_key)
        _declare_key_in_openapi(app)
    app.include_router(router)
    app.add_exception_handler(Exception, _unexpected)
    return app


def _declare_key_in_openapi(app) -> None:
    """List the two ways to send the key in the OpenAPI document, so /docs has an Authorize button."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _parser() -> argparse.ArgumentParser:
    parser = add_console_options(
        argparse.ArgumentParser(
            prog="socialfusion serve", description="HTTP service and web page for a SocialFusion model"
        )
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint directory or preset name (e.g. tiny)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=10.0, help="largest accepted image upload, in MB (default 10)"
    )
    parser.add_argument("--max-concurrency", type=int, default=2, help="requests computed at once")
    parser.add_argument("--max-queue", type=int, default=8, help="requests allowed to wait; beyond: 503 + Retry-After")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    parser.add_argument("--threads", type=parse_threads, default="auto", metavar="N", help=THREADS_HELP)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="the server's log level",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require this key on every request (default: ${API_KEY_ENV}); "
        "clients send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
    )
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    refusal = bind_refusal(args.host, api_key, args.insecure)
    if refusal:  # before loading the model: a refused start costs nothing
        raise UserError(
            refusal,
            hint=f"socialfusion serve --host {args.host} --api-key "
            "KEY (clients send it as 'Authorization: Bearer KEY')",
        )

    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with warnings.catch_warnings():  # printed below, once, in the service's words
        warnings.simplefilter("ignore", UntrainedModelWarning)
        predictor = SocialFusion.from_pretrained(
            args.ckpt, device=args.device, threads=args.threads
        )  # a wrong path: UserError, for the dispatcher
    app = create_app(
        predictor,
        max_upload_bytes=int(args.max_upload_mb * MB),
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        api_key=api_key,
    )
    if not api_key and not is_loopback(args.host):
        print(
            f"warning: listening on {args.host} with no API key (--insecure): anyone who reaches it can use it",
            file=sys.stderr,
        )
    print(f"model card: {predictor.card_summary}", file=sys.stderr)
    if predictor.warning:
        print(f"WARNING: {predictor.warning}", file=sys.stderr)
    print(
        f"serving {predictor.name} on http://{args.host}:{args.port}/ (docs: /docs; CPU threads: {predictor.threads})",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
