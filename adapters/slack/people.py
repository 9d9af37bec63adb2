"""Display names of Slack users (users.info), cached per workspace and looked up once at a time."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from adapters.slack.api import SlackApi
from adapters.slack.sink import Scopes
from core.errors import SinkError
from core.streaming import Priority

log = logging.getLogger(__name__)

NAME_LIMIT = 20_000


class AuthorNames:
    """`name(api, space, user)`: the display name, or the user id when users.info fails."""

    def __init__(self) -> None:
        self._names: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lookups: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def name(self, api: SlackApi, space: str, user: str) -> str:
        key = (space, user)
        known = self._names.get(key)
        if known is not None:
            return known
        pending = self._lookups.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._lookups[key] = future
        name = user
        try:
            data = await api.call(
                "users.info",
                scopes=Scopes.users_info(space),
                priority=Priority.FIRST,
                form=True,
                user=user,
            )
            found = data.get("user") or {}
            profile = found.get("profile") or {}
            name = str(
                profile.get("display_name")
                or profile.get("real_name")
                or found.get("real_name")
                or found.get("name")
                or user
            )
        except SinkError as exc:
            log.info("users.info failed for %s: %s", user, exc)
        finally:
            self._lookups.pop(key, None)
            self._names[key] = name
            if len(self._names) > NAME_LIMIT:
                self._names.popitem(last=False)
            future.set_result(name)
        return name
