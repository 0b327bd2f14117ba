"""Web page and HTTP JSON API over the Python API (``llmroofline serve``).

FastAPI and uvicorn are optional (the ``web`` extra): nothing here imports them at module
level, so ``import llmroofline`` stays light; :func:`create_app` and :func:`serve` import
them and turn a missing install into one :class:`~llmroofline.errors.InputError` line.

- ``schemas.py``: request bodies (pydantic), with the caps that bound the work of a request;
- ``service.py``: request -> the same JSON data as the CLI's ``--json`` (no web framework);
- ``app.py``: the FastAPI application: ``/api/...`` routes, error mapping, the page at ``/``
  and its static files (plotly.js from the installed plotly package: works offline).
"""

from __future__ import annotations

import ipaddress
import socket

from ..errors import InputError

INSTALL_HINT = 'pip install "llmroofline[web]"'


def require() -> None:
    """Raise a one-line :class:`InputError` when FastAPI or uvicorn is missing."""
    missing = []
    for mod in ("fastapi", "uvicorn"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise InputError(f"serve needs {' and '.join(missing)}: {INSTALL_HINT}")


def create_app():
    """The FastAPI application (``fastapi`` is imported here, not at package import)."""
    require()
    from .app import create_app as _create
    return _create()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, port: int) -> None:
    """One-line error when ``host:port`` cannot be bound (bad port, in use, unknown host)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InputError(f"port must be an integer in [1, 65535], got {port!r}")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InputError(f"host: cannot resolve {host!r} ({e.strerror})") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise InputError(f"port: cannot listen on {host}:{port} ({e.strerror})") from None


def serve(host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the page and the API with uvicorn until interrupted."""
    require()
    check_listen(host, port)
    import uvicorn
    uvicorn.run(create_app(), host=host.strip("[]"), port=port, log_level=log_level)


__all__ = ["create_app", "serve", "require", "is_loopback", "check_listen", "INSTALL_HINT"]
