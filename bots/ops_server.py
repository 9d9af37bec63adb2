"""The operations HTTP server: `/healthz` (alive), `/readyz` (ready to answer), `/metrics`."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from bots.wiring import Runtime
from core.errors import ConfigError
from core.metrics import REGISTRY

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0


async def serve(runtime: Runtime, host: str, port: int) -> None:
    """Serve the three endpoints on host:port until cancelled (port 0: any free port)."""
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", lambda request: _readyz(runtime))
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                "THREADLINE_HTTP_PORT", f"cannot listen on {host}:{port} ({exc.strerror or exc})"
            ) from None
        sockets = getattr(getattr(site, "_server", None), "sockets", None) or ()
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("http server listening on %s:%s (/healthz, /readyz, /metrics)", host, bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _readyz(runtime: Runtime) -> web.Response:
    """200 when the database, Redis (when configured) and every channel are connected."""
    checks: dict[str, str] = {"database": await _database(runtime)}
    redis_url = runtime.settings.redis_url
    if redis_url is not None:
        checks["redis"] = await _redis(redis_url.get_secret_value())
    for platform in runtime.settings.enabled_platforms():
        event = runtime.ready.get(platform)
        checks[platform] = "ok" if event is not None and event.is_set() else "not connected"
    ready = all(state == "ok" for state in checks.values())
    body = json.dumps({"ready": ready, "checks": checks}, sort_keys=True) + "\n"
    return web.Response(text=body, status=200 if ready else 503, content_type="application/json")


async def _database(runtime: Runtime) -> str:
    def ping(connection: object) -> None:
        connection.execute(text("SELECT 1"))  # type: ignore[attr-defined]

    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await runtime.store.run("checking the database", ping, write=False)
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return "ok"


async def _redis(url: str) -> str:
    """PING over the Redis protocol (no password in any message)."""
    parts = urlsplit(url)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                parts.hostname or "127.0.0.1", parts.port or 6379
            )
            try:
                if parts.password:
                    user = parts.username or "default"
                    writer.write(_command("AUTH", user, parts.password))
                    await reader.readline()
                writer.write(_command("PING"))
                await writer.drain()
                reply = await reader.readline()
            finally:
                writer.close()
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return "ok" if reply.startswith(b"+PONG") else "failed: no PONG"


def _command(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
