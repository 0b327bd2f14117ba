"""The FastAPI application: JSON API under ``/api``, the page at ``/``, its static files.

Status codes: 200 with the CLI's ``--json`` data; 422 when a request body does not
validate (FastAPI's field-level ``detail`` list plus a one-line ``message``); 400 with
``{"detail": message, "field": name}`` when the engine rejects the input
(:class:`InputError`); 404 for an unknown device in ``/api/hardware/{id}``; 411/413 for a
body without a length or longer than ``MAX_BODY_BYTES``. The interactive OpenAPI viewers
(``/docs``, ``/redoc``) are off because they load their scripts from a CDN; the schema is
at ``/openapi.json``. 421 when the ``Host`` header names another server (DNS rebinding:
:func:`~llmroofline.web.allowed_host`). Every answer is strict JSON: a body's NaN,
Infinity or lone surrogate is echoed as text in the 422 answer, never rendered raw.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import __version__
from ..errors import InputError
from . import allowed_host, service
from .schemas import (CAPS, MAX_BODY_BYTES, AnalyzeRequest, CompareRequest, InputErrorBody,
                      RankRequest, RooflineRequest)

STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
ERRORS = {400: {"model": InputErrorBody, "description": "The engine rejected the input "
                "(one line naming the field)."},
          422: {"description": "The body does not validate (field-level errors)."}}


def _static_path(name: str) -> Path:
    return Path(str(resources.files("llmroofline.web") / "static" / name))


def plotly_js_path() -> Path | None:
    """``plotly.min.js`` shipped inside the installed plotly package (no CDN)."""
    try:
        p = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        return None
    return p if p.is_file() else None


def _loc(err: dict) -> str:
    """``["body", "hardware", 2]`` -> ``hardware.2``; union branch tags are dropped."""
    loc = [x for x in err.get("loc", ()) if x not in ("body", "query", "path")]
    if not loc:
        return "body"
    parts = [str(loc[0])]
    for x in loc[1:]:
        if not isinstance(x, int):
            break
        parts.append(str(x))
    return ".".join(parts)


def _safe(v, depth: int = 0):
    """A value of a request, made renderable as strict JSON: non-finite numbers (NaN,
    Infinity, 1e400) become their text, lone surrogates in strings backslash escapes."""
    if depth > 32:
        return "..."
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, dict):
        return {_safe(k, depth + 1): _safe(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_safe(x, depth + 1) for x in v]
    return v


def create_app(host: str = "127.0.0.1", allow_hosts: tuple[str, ...] = ()) -> FastAPI:
    app = FastAPI(title="llmroofline", version=__version__, docs_url=None, redoc_url=None,
                  description="Per-operator roofline predictions of LLM inference: the same "
                              "engine and JSON as the `llmroofline` command line. Caps per "
                              f"request: {CAPS}.")

    @app.middleware("http")
    async def limits_and_headers(request: Request, call_next):
        hdr = request.headers.get("host")
        if not allowed_host(hdr, host, allow_hosts):   # DNS rebinding (docs/web.md)
            return JSONResponse({"detail": f"host: this server does not answer to "
                                           f"{_safe(hdr or '')!r} (Host header); it serves "
                                           f"{host}; see --allow-host", "field": "host"}, 421)
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "body: send a Content-Length header"}, 411)
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return JSONResponse({"detail": f"body: larger than {MAX_BODY_BYTES} bytes",
                                     "field": "body"}, 413)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError):
        msg = _safe(str(exc))
        return JSONResponse({"detail": msg, "field": service.field_of(msg)}, 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errs = []
        for e in exc.errors():
            e = {k: _safe(v) for k, v in e.items() if k in ("type", "loc", "msg", "input")}
            if e.get("type") == "json_invalid":
                e["loc"] = ["body"]
            errs.append(e)
        by_field: dict[str, list[str]] = {}
        for e in errs:  # a union's branches give one message each: "a or b"
            by_field.setdefault(_loc(e), [])
            if e["msg"] not in by_field[_loc(e)]:
                by_field[_loc(e)].append(e["msg"])
        message = "; ".join(f"{f}: {' or '.join(m)}" for f, m in by_field.items())
        fields = list(dict.fromkeys(f.split(".")[0] for f in by_field))
        return JSONResponse(jsonable_encoder({"detail": errs, "message": message,
                                              "fields": fields}), 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug, not the user's input
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); please report "
                                       "the request that caused it"}, 500)

    # -- page and static files ---------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(_static_path("index.html"), media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name == "plotly.min.js":
            p = plotly_js_path()
            if p is None:
                return JSONResponse({"detail": 'plotly is not installed: pip install '
                                               '"llmroofline[web]"'}, 404)
            return FileResponse(p, media_type="text/javascript",
                                headers={"Cache-Control": "max-age=86400"})
        if name not in STATIC:  # a fixed list: no path from the request reaches the disk
            return JSONResponse({"detail": f"no static file {name!r}"}, 404)
        return FileResponse(_static_path(name), media_type=STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    # -- API ---------------------------------------------------------------------------
    @app.get("/api/models", summary="Built-in models (as `llmroofline models --json`)")
    def api_models() -> list[dict]:
        return service.models()

    @app.get("/api/hardware", summary="Catalog devices (as `llmroofline hardware --json`)")
    def api_hardware() -> list[dict]:
        return service.hardware_list()

    @app.get("/api/hardware/{device}", summary="One device with its sources",
             responses={404: {"model": InputErrorBody}})
    def api_hardware_one(device: str):
        try:
            return service.hardware_one(device)
        except InputError as e:
            return JSONResponse({"detail": str(e), "field": "hardware"}, 404)

    @app.get("/api/limits", summary="Caps on the work of one request")
    def api_limits() -> dict:
        return CAPS

    @app.post("/api/analyze", responses=ERRORS,
              summary="Prefill/decode per operator, TTFT, TPOT, throughput, memory "
                      "(as `llmroofline analyze --json`)")
    def api_analyze(req: AnalyzeRequest) -> dict:
        return service.analyze(req)

    @app.post("/api/roofline", responses=ERRORS,
              summary="Operators on the devices' roofs (as `llmroofline roofline --json`)")
    def api_roofline(req: RooflineRequest) -> dict:
        return service.roofline(req)

    @app.post("/api/compare", responses=ERRORS,
              summary="Decode throughput of devices over batch x seq (as `llmroofline compare --json`)")
    def api_compare(req: CompareRequest) -> dict:
        return service.compare(req)

    @app.post("/api/rank", responses=ERRORS,
              summary="Devices ranked for one workload (as `llmroofline rank --json`)")
    def api_rank(req: RankRequest) -> dict:
        return service.rank(req)

    return app
