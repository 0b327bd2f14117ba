"""`serve`: the web page and HTTP API."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import (
    app, err,
)


# -- serve (issue 7) ----------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default; the API has no authentication).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    allow_host: Annotated[Optional[list[str]], typer.Option("--allow-host", help="Another name this server answers to in the Host header (e.g. behind a proxy); repeatable. Loopback names and the --host address always work.")] = None,
) -> None:
    """Web page and HTTP JSON API on http://HOST:PORT/ (needs the web extra)."""
    from .. import web
    web.require()
    web.check_listen(host, port)
    if not web.is_loopback(host):
        err.print(f"[yellow]warning:[/] listening on {host}, not a loopback address: anyone who "
                  "can reach it can use the API (it has no authentication)")
    err.print(f"llmroofline: http://{host if ':' not in host else f'[{host}]'}:{port}/  "
              f"(API schema: /openapi.json; Ctrl+C stops)")
    web.serve(host, port, allow_hosts=tuple(allow_host or ()))


