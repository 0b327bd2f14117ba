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


def create_app(host: str = "127.0.0.1", allow_hosts: tuple[str, ...] = ()):
    """The FastAPI application (``fastapi`` is imported here, not at package import).

    ``host``: the address it is served on; requests whose ``Host`` header names another
    server are refused (:func:`allowed_host`); ``allow_hosts``: further accepted names."""
    require()
    from .app import create_app as _create
    return _create(host, tuple(allow_hosts))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The host of a ``Host`` header without its port: ``[::1]:8000`` -> ``::1``."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def allowed_host(header: str | None, bound: str, extra: tuple[str, ...] = ()) -> bool:
    """DNS-rebinding guard: is ``header`` (the request's ``Host``) a name of this server?

    Policy (docs/web.md, "Security"): the loopback names (``localhost``, ``127.0.0.1``,
    ``::1``), the address the server is bound to, and the names given with
    ``--allow-host`` are accepted. A server bound to every interface (``0.0.0.0``, ``::``)
    also accepts any IP address literal and this machine's host name. Any other name
    (``evil.example`` resolving to 127.0.0.1) is refused, so a web page elsewhere cannot
    reach the API through the user's browser.
    """
    if not header:
        return False
    name = host_name(header)
    names = {*LOCAL_NAMES, host_name(bound), *(host_name(x) for x in extra)}
    if name in names:
        return True
    if host_name(bound) in ("0.0.0.0", "::", ""):
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in {socket.gethostname().lower(), socket.getfqdn().lower()}
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


def serve(host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          allow_hosts: tuple[str, ...] = ()) -> None:
    """Run the page and the API with uvicorn until interrupted."""
    require()
    check_listen(host, port)
    import uvicorn
    uvicorn.run(create_app(host, allow_hosts), host=host.strip("[]"), port=port,
                log_level=log_level)


__all__ = ["create_app", "serve", "require", "is_loopback", "check_listen", "INSTALL_HINT",
           "allowed_host", "host_name"]
