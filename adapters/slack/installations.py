"""Slack installs in many workspaces: slack_sdk's installation and state stores on our tables."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import timedelta
from typing import Any

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from core.store.installations import InstallationRecords, Workspace

log = logging.getLogger(__name__)

PLATFORM = "slack"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
# The bot scopes of docs/slack-app-manifest.yaml.
BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "chat:write",
    "commands",
    "groups:history",
    "im:history",
    "mpim:history",
    "users:read",
)


def _workspace(
    enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
) -> Workspace:
    return Workspace(PLATFORM, enterprise_id, team_id, bool(is_enterprise_install))


class SealedInstallationStore(AsyncInstallationStore):
    """Bolt's installation store on threadline's `installations` table, one record per
    workspace (the latest install), each record encrypted (`core.secret_box`)."""

    def __init__(self, records: InstallationRecords) -> None:
        self._records = records

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        workspace = _workspace(
            installation.enterprise_id, installation.team_id, installation.is_enterprise_install
        )
        record = {"kind": "installation", "data": installation.__dict__}
        await self._records.save(workspace, json.dumps(record).encode())
        log.info("slack app installed in %s", _name(workspace))

    async def async_save_bot(self, bot: Bot) -> None:
        workspace = _workspace(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        found = await self._load(workspace)
        if found is not None and found["kind"] == "installation":
            data = dict(found["data"])  # a rotated bot token: keep the rest of the install
            for name in ("bot_token", "bot_refresh_token", "bot_token_expires_at", "bot_scopes"):
                data[name] = getattr(bot, name)
            record: dict[str, Any] = {"kind": "installation", "data": data}
        else:
            record = {"kind": "bot", "data": bot.__dict__}
        await self._records.save(workspace, json.dumps(record).encode())

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        found = await self._load(_workspace(enterprise_id, team_id, is_enterprise_install))
        if found is None:
            return None
        if found["kind"] == "installation":
            return Installation(**found["data"]).to_bot()
        return Bot(**found["data"])

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        found = await self._load(_workspace(enterprise_id, team_id, is_enterprise_install))
        if found is None or found["kind"] != "installation":
            return None
        installation = Installation(**found["data"])
        if user_id is not None and installation.user_id != user_id:
            return None  # only bot installs are kept: no per-user tokens
        return installation

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._forget(enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:
            await self._forget(enterprise_id, team_id)

    async def async_delete_all(
        self, *, enterprise_id: str | None, team_id: str | None
    ) -> None:
        await self._forget(enterprise_id, team_id)

    async def _forget(self, enterprise_id: str | None, team_id: str | None) -> None:
        workspace = _workspace(enterprise_id, team_id, not team_id)
        if await self._records.delete(workspace):
            log.info("slack installation in %s removed", _name(workspace))

    async def _load(self, workspace: Workspace) -> dict[str, Any] | None:
        raw = await self._records.find(workspace)
        if raw is None:
            return None
        loaded: dict[str, Any] = json.loads(raw)
        return loaded


class StoredStateStore(AsyncOAuthStateStore):
    """OAuth states in the database, so any replica can finish an install another one began."""

    def __init__(self, records: InstallationRecords, *, expiration_seconds: int = 600) -> None:
        self._records = records
        self._lifetime = timedelta(seconds=expiration_seconds)

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await self._records.issue_state(state, self._lifetime)
        return state

    async def async_consume(self, state: str) -> bool:
        return await self._records.consume_state(state)


def oauth_settings(
    records: InstallationRecords,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str | None = None,
) -> AsyncOAuthSettings:
    """Bolt's OAuth settings: install at /slack/install, back at /slack/oauth_redirect, the
    installs and states kept (sealed) in threadline's database, rotated tokens refreshed."""
    return AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        installation_store=SealedInstallationStore(records),
        installation_store_bot_only=True,
        state_store=StoredStateStore(records),
    )


def _name(workspace: Workspace) -> str:
    return workspace.team_id or f"enterprise {workspace.enterprise_id}"
