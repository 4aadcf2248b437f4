"""`socialfusion serve`: an HTTP service (FastAPI) and a web page around one SocialFusion model.

Endpoints:
  GET  /          the web page (upload an image, draw boxes, pick tasks, see labels and the gaze heatmap)
  GET  /health    liveness and load
  GET  /tasks     task names, kinds, classes and the box roles each task needs
  POST /predict   multipart/form-data: `image` (file), `boxes` (JSON list of {xyxy, role, normalized}),
                  `tasks` ("all" or a comma list) -> JSON results (gaze heatmap as a 64x64 list, 4 decimals)
  GET  /docs      OpenAPI documentation (FastAPI's default)

Bad input always gets a 4xx with {"detail": "..."}: 400 malformed form or boxes JSON, 413 upload too large or
decompression bomb, 415 not multipart / not an image, 422 missing image, corrupt or truncated image, boxes out
of range or impossible, unknown task. Backpressure: at most `max_concurrency` requests run at once (in a
thread pool, the model itself under a lock) and at most `max_queue` more wait; beyond that the answer is 503
with Retry-After, so memory stays bounded (each admitted request holds at most one upload).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _read_index_html() -> str:
    from importlib import resources

    return resources.files("socialfusion.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    predictor: Any,
    max_upload_bytes: int = 10 * MB,
    max_concurrency: int = 2,
    max_queue: int = 8,
    max_boxes: int = DEFAULT_MAX_BOXES,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    retry_after_s: int = 1,
):
    """The FastAPI app serving `predictor` (a `socialfusion.api.SocialFusion`)."""
    from ..api import PredictInputError, load_image_bytes, result_to_json
    from ..data.images import ImageError

    if max_concurrency < 1 or max_queue < 0 or max_upload_bytes < 1:
        raise ValueError("max_concurrency >= 1, max_queue >= 0 and max_upload_bytes >= 1 are required")
    gate = _Gate(max_concurrency + max_queue)
    running = threading.BoundedSemaphore(max_concurrency)
    index_html = _read_index_html()
    body_limit = max_upload_bytes + FORM_SLACK

    app = FastAPI(
        title="SocialFusion",
        description="Social perception from an image and boxes: looking-at-me, expression, gesture, relation, gaze.",
        version="1",
    )
    app.state.predictor = predictor
    app.state.gate = gate

    def fail(status: int, detail: str, headers: dict | None = None):
        raise HTTPException(status_code=status, detail=detail, headers=headers)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        csp = "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'"
        return HTMLResponse(index_html, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"})

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": predictor.name,
            "device": str(predictor.device),
            "tasks": predictor.task_names,
            "inside": gate.inside,
            "capacity": gate.limit,
        }

    @app.get("/tasks")
    def tasks() -> dict:
        return {
            "tasks": predictor.describe_tasks(),
            "max_upload_bytes": max_upload_bytes,
            "max_boxes": max_boxes,
            "roles": {"0": "subject (face, hand, head, first person)", "1": "second person (relation)"},
        }

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                fail(400, f"invalid Content-Length header {declared!r}")
            if n > body_limit:
                fail(413, f"upload too large: {n} bytes; the limit is {max_upload_bytes} bytes for the image")
        body = bytearray()
        async for chunk in request.stream():  # counted while reading: never more than the limit in memory
            body += chunk
            if len(body) > body_limit:
                fail(413, f"upload too large: more than {max_upload_bytes} bytes for the image")
        return bytes(body)

    async def parse_form(request: Request, body: bytes):
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
            fail(err.status_code, f"malformed form body: {err.detail}")

    def run(data: bytes, filename: str, boxes: Any, task_names: list[str]) -> dict:
        with running:  # bounded: at most max_concurrency decoded images and inferences at a time
            t0 = time.perf_counter()
            image = load_image_bytes(data, filename, max_pixels=max_image_pixels)
            [result] = predictor.predict(image, boxes=boxes, tasks=task_names)
            out = result_to_json(result, heatmap="list", decimals=4)
            out["image"] = filename
            out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            return out

    predict_body = {
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
                            "description": 'JSON list of boxes, e.g. [{"xyxy": [10, 20, 110, 140], "role": 0}]; pixel '
                            "coordinates when any value > 1 unless \"normalized\" says otherwise; none: the whole image",
                        },
                        "tasks": {"type": "string", "default": "all", "description": '"all" or a comma list, e.g. "lam,gaze"'},
                    },
                }
            }
        },
    }

    @app.post(
        "/predict",
        openapi_extra={"requestBody": predict_body},
        responses={400: {}, 413: {}, 415: {}, 422: {}, 503: {}},
    )
    async def predict(request: Request) -> JSONResponse:
        if not gate.enter():
            fail(503, f"busy: {gate.limit} requests are already being served; retry shortly", {"Retry-After": str(retry_after_s)})
        try:
            ctype = request.headers.get("content-type", "")
            if not ctype.lower().startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
                fail(415, "send multipart/form-data with an 'image' file field (and optional 'boxes' and 'tasks' fields)")
            body = await read_body(request)
            form = await parse_form(request, body)
            try:
                upload = form.get("image")
                if upload is None:
                    fail(422, "missing the 'image' file field (send multipart/form-data with the image as a file)")
                if isinstance(upload, str):
                    fail(422, "'image' must be a file upload, not a text field")
                data = await upload.read()
                filename = upload.filename or "upload"
                if len(data) > max_upload_bytes:
                    fail(413, f"image too large: {len(data)} bytes; the limit is {max_upload_bytes}")
                if not data:
                    fail(422, f"{filename}: the image file is empty (0 bytes)")
                boxes = parse_boxes_field(form.get("boxes"))
                if boxes is not None and len(boxes) > max_boxes:
                    fail(422, f"{len(boxes)} boxes; at most {max_boxes} per image")
                tasks_field = form.get("tasks")
                if tasks_field is not None and not isinstance(tasks_field, str):
                    fail(422, "'tasks' must be a text field")
                task_names = predictor.resolve_tasks("all" if tasks_field is None else tasks_field)
            finally:
                await form.close()
            return JSONResponse(await run_in_threadpool(run, data, filename, boxes, task_names))
        except ImageError as err:
            fail(_STATUS_BY_REASON.get(err.reason, 422), str(err))
        except PredictInputError as err:
            fail(422, str(err))
        finally:
            gate.leave()

    def parse_boxes_field(raw: Any):
        if raw is None:
            return None
        if not isinstance(raw, str):
            fail(422, "'boxes' must be a text field holding JSON")
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as err:
            fail(400, f"'boxes' is not valid JSON: {err}")
        if value is None:
            return None
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            fail(422, f"'boxes' must be a JSON list of box objects, got {type(value).__name__}")
        return value

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):  # a bug, never bad input: log it, answer briefly
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(err).__name__}"}, status_code=500)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="socialfusion serve", description="HTTP service and web page for a SocialFusion model")
    parser.add_argument("--ckpt", required=True, help="checkpoint directory or preset name (e.g. tiny)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=10.0)
    parser.add_argument("--max-concurrency", type=int, default=2, help="requests computed at once")
    parser.add_argument("--max-queue", type=int, default=8, help="requests allowed to wait; beyond: 503 + Retry-After")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)

    import uvicorn

    from ..api import SocialFusion

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        predictor = SocialFusion.from_pretrained(args.ckpt, device=args.device)
    except Exception as err:  # a wrong path or preset: say so, no traceback
        print(f"socialfusion serve: cannot load {args.ckpt!r}: {err}", file=sys.stderr)
        return 2
    app = create_app(
        predictor,
        max_upload_bytes=int(args.max_upload_mb * MB),
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: the service has no authentication", file=sys.stderr)
    print(f"serving {predictor.name} on http://{args.host}:{args.port}/ (docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
