"""Installations of the app in workspaces (sealed credentials) and OAuth states, in the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, update

from core.secret_box import SecretBox
from core.store.history import HistoryStore
from core.store.models import Installation, OAuthState

INSTALLATIONS: Table = Installation.__table__  # type: ignore[attr-defined]
STATES: Table = OAuthState.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Workspace:
    """Which workspace an installation is for (`team_id` empty for an org-wide install)."""

    platform: str
    enterprise_id: str | None
    team_id: str | None
    is_enterprise_install: bool = False

    @property
    def columns(self) -> dict[str, object]:
        return {
            "platform": self.platform,
            "enterprise_id": self.enterprise_id or "",
            "team_id": "" if self.is_enterprise_install else (self.team_id or ""),
        }


class InstallationRecords:
    """Save, find and forget installations; each record is sealed with `box` before storing."""

    def __init__(self, store: HistoryStore, box: SecretBox) -> None:
        self._store = store
        self._box = box

    async def save(self, workspace: Workspace, record: bytes) -> None:
        """Store `record` as the workspace's installation (replacing an older one)."""
        sealed = self._box.seal(record)
        now = datetime.now(UTC)
        where = _matching(workspace)

        def work(connection: Connection) -> None:
            changed = connection.execute(
                update(INSTALLATIONS)
                .where(*where)
                .values(
                    sealed=sealed,
                    installed_at=now,
                    is_enterprise_install=workspace.is_enterprise_install,
                )
            ).rowcount
            if not changed:
                connection.execute(
                    insert(INSTALLATIONS).values(
                        **workspace.columns,
                        is_enterprise_install=workspace.is_enterprise_install,
                        sealed=sealed,
                        installed_at=now,
                    )
                )

        await self._store.run("saving an installation", work)

    async def find(self, workspace: Workspace) -> bytes | None:
        """The workspace's installation record; an org-wide install of its enterprise counts."""
        candidates = [workspace]
        if workspace.enterprise_id and not workspace.is_enterprise_install:
            candidates.append(Workspace(workspace.platform, workspace.enterprise_id, None, True))

        def work(connection: Connection) -> bytes | None:
            for candidate in candidates:
                row = connection.execute(
                    select(INSTALLATIONS.c.sealed).where(*_matching(candidate))
                ).first()
                if row is not None:
                    return bytes(row[0])
            return None

        sealed = await self._store.run("reading an installation", work, write=False)
        return None if sealed is None else self._box.open(sealed)

    async def delete(self, workspace: Workspace) -> int:
        """Forget the workspace's installation; returns how many records went."""

        def work(connection: Connection) -> int:
            return int(
                connection.execute(delete(INSTALLATIONS).where(*_matching(workspace))).rowcount
            )

        return await self._store.run("deleting an installation", work)

    async def count(self, platform: str) -> int:
        """How many workspaces the app is installed in on `platform`."""

        def work(connection: Connection) -> int:
            rows = connection.execute(
                select(INSTALLATIONS.c.id).where(INSTALLATIONS.c.platform == platform)
            )
            return len(rows.all())

        return await self._store.run("counting installations", work, write=False)

    async def issue_state(self, state: str, lifetime: timedelta) -> None:
        """Remember an OAuth `state` until `lifetime` has passed (and drop expired ones)."""
        now = datetime.now(UTC)

        def work(connection: Connection) -> None:
            connection.execute(delete(STATES).where(STATES.c.expires_at < now))
            connection.execute(insert(STATES).values(state=state, expires_at=now + lifetime))

        await self._store.run("issuing an OAuth state", work)

    async def consume_state(self, state: str) -> bool:
        """True once for a state issued and not expired; it cannot be used again."""
        now = datetime.now(UTC)

        def work(connection: Connection) -> bool:
            row = connection.execute(
                delete(STATES).where(STATES.c.state == state).returning(STATES.c.expires_at)
            ).first()
            return row is not None and _aware(row[0]) >= now

        return await self._store.run("consuming an OAuth state", work)


def _matching(workspace: Workspace) -> list[ColumnElement[bool]]:
    columns = workspace.columns
    return [
        INSTALLATIONS.c.platform == columns["platform"],
        INSTALLATIONS.c.enterprise_id == columns["enterprise_id"],
        INSTALLATIONS.c.team_id == columns["team_id"],
    ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
