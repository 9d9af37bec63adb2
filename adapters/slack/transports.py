"""Bolt's two Slack transports, each request ticketed in arrival order: Socket Mode and HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from adapters.slack.arrival_order import ArrivalOrder

log = logging.getLogger(__name__)


class OrderedSocketModeHandler(AsyncSocketModeHandler):
    """slack_sdk's aiohttp Socket Mode client under Bolt, with arrival tickets.

    The client runs each envelope in a task of its own; the ticket is taken before the first
    await, so envelopes reach the core's accept step in the order Slack sent them.
    """

    def __init__(self, app: AsyncApp, app_token: str, order: ArrivalOrder, **kwargs: object):
        super().__init__(app, app_token, **kwargs)  # type: ignore[arg-type]
        self._order = order

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        async with self._order.arrived():
            await super().handle(client, req)


class OrderedHttpServer(AsyncSlackAppServer):
    """Bolt's aiohttp server (events with signature checks, OAuth install and redirect)."""

    def __init__(self, app: AsyncApp, path: str, order: ArrivalOrder) -> None:
        super().__init__(port=0, path=path, app=app)
        self._order = order

    async def handle_post_requests(self, request: web.Request) -> web.Response:
        if self.path != request.path:
            return web.Response(status=404)
        async with self._order.arrived():
            bolt_request = await to_bolt_request(request)
            response = await self.bolt_app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)


async def serve_socket_mode(
    handler: OrderedSocketModeHandler, on_connected: Callable[[], None]
) -> None:
    """Connect and stay connected (the client reconnects itself) until cancelled."""
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("slack socket mode connected")
        on_connected()
        await asyncio.Event().wait()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


async def serve_http(
    server: OrderedHttpServer, host: str, port: int, on_listening: Callable[[int], None]
) -> None:
    """Serve Bolt's routes on host:port until cancelled."""
    runner = web.AppRunner(server.web_app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = getattr(getattr(site, "_server", None), "sockets", None) or ()
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        on_listening(bound)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
