"""The accept step: answer or ignore a message, claim its event and fix its place in order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType

from core.conversation import MAIN_THREAD, ConversationKey, Inbound
from core.locks import KeyedLocks, Ticket
from core.store import Branch, HistoryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    """Where an accepted message goes: its conversation, and whether it started a branch."""

    key: ConversationKey
    started_branch: bool = False
    """A branch is started (and its event claimed) in one transaction while routing."""


class Accepted:
    """A message the core took in: its event is held and its place in its chat's order fixed."""

    def __init__(self, router: Router, inbound: Inbound, ticket: Ticket) -> None:
        self.inbound = inbound
        self._router = router
        self._ticket = ticket

    @property
    def claim(self) -> tuple[str, str]:
        """(platform, event id): what makes the event unique across processes."""
        return (self.inbound.key.platform, self.inbound.claim_id)

    async def route(self) -> Routed | None:
        """Wait for the chat's turn, decide, and reserve the conversation's place.

        None when the message is not for the bot or its event was handled before; the event is
        then released. Otherwise the caller must close the returned `Routed` (`async with`).
        """
        try:
            async with self._ticket:
                route = await self._router.decide(self.inbound, self.claim)
                if route is None:
                    self._router.release(self.claim)
                    return None
                return Routed(self._router, self, route)
        except BaseException:
            self._router.release(self.claim)
            raise

    def drop(self) -> None:
        """Give the message up without routing it (its place and its event are released)."""
        self._router.release(self.claim)
        self._ticket.leave()


class Routed:
    """An accepted message with its conversation and a reserved place in that conversation.

    `async with routed:` guarantees the place and the event are released; `await turn()` waits
    until every message before it in the conversation has been answered.
    """

    def __init__(self, router: Router, accepted: Accepted, route: Route) -> None:
        self.inbound = accepted.inbound
        self.claim = accepted.claim
        self.route = route
        self._router = router
        self._ticket = router.conversations.reserve(route.key)
        self._entered = False

    @property
    def key(self) -> ConversationKey:
        """The conversation the message belongs to."""
        return self.route.key

    @property
    def claim_on_store(self) -> tuple[str, str] | None:
        """The claim still to make when the turn is stored (None: already made while routing)."""
        return None if self.route.started_branch else self.claim

    def move_to(self, key: ConversationKey) -> None:
        """Move a message that starts a conversation to `key` (a thread opened for it)."""
        if self._entered:
            raise RuntimeError("a message cannot move once its turn has come")
        self._ticket.leave()
        self.route = Route(key, self.route.started_branch)
        self._ticket = self._router.conversations.reserve(key)

    async def turn(self) -> None:
        """Wait until the messages before this one in its conversation are answered."""
        await self._ticket.__aenter__()
        self._entered = True

    async def __aenter__(self) -> Routed:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ticket.leave()
        self._router.release(self.claim)


class Router:
    """Decides where every message goes, one chat at a time, in arrival order."""

    def __init__(self, store: HistoryStore, *, history_turns: int) -> None:
        self._store = store
        self._history_turns = history_turns
        self._chats = KeyedLocks()
        self.conversations = KeyedLocks()
        self._held: set[tuple[str, str]] = set()

    def accept(self, inbound: Inbound) -> Accepted | None:
        """Take `inbound` in at once (no await): hold its event and join its chat's order.

        None when the same event is already being handled in this process (a platform that
        delivers one message as two events, or a redelivery); across processes the store's
        claim decides.
        """
        claim = (inbound.key.platform, inbound.claim_id)
        if claim in self._held:
            return None
        self._held.add(claim)
        return Accepted(self, inbound, self._chats.reserve(inbound.key.chat))

    async def claim(self, claim: tuple[str, str]) -> bool:
        """Claim an event in the store (across processes); False when it was claimed before."""
        return await self._store.claim_event(*claim)

    def release(self, claim: tuple[str, str]) -> None:
        """Stop holding an event in this process (handled, ignored or failed)."""
        self._held.discard(claim)

    async def decide(self, inbound: Inbound, claim: tuple[str, str]) -> Route | None:
        """The conversation of `inbound`, or None when it is not for the bot or a duplicate.

        A reply continues the conversation of the message it replies to; in a direct chat a
        reply to an older message starts a branch from that point, which becomes the chat's
        running conversation at once (so the messages after it follow the branch). An
        unaddressed message is answered only when it continues a conversation.
        """
        if inbound.reply_to and (inbound.addressed or inbound.continues_reply):
            found = await self._store.find_turn(
                inbound.key.platform,
                inbound.reply_to,
                space=inbound.key.space,
                channel=inbound.key.channel,
            )
            if found is not None:
                key, turn_id = found
                if not inbound.is_direct:
                    return Route(key)
                return await self._continue_or_branch(inbound, key, turn_id, claim)
        if not inbound.addressed and not (
            inbound.continues_thread and await self._has_turns(inbound.key)
        ):
            return None
        key = inbound.key
        if key.is_running:
            meta = await self._store.get_meta(key)
            key = key.in_thread(str(meta.get("current_thread", MAIN_THREAD)))
        return Route(key)

    async def _continue_or_branch(
        self, inbound: Inbound, key: ConversationKey, turn_id: int, claim: tuple[str, str]
    ) -> Route | None:
        """A reply in a direct chat: its conversation when it replies to the newest turn."""
        latest = await self._store.recent(key, limit=1, platform_message_ids=False)
        if not latest or latest[-1].id == turn_id:
            return Route(key)
        meta = await self._store.get_meta(key)
        branch = Branch(
            key=key.in_thread(inbound.message_id),
            source=key,
            upto_turn_id=turn_id,
            since_turn=int(meta.get("since_turn", 0)),
            limit=self._history_turns,
            params=meta.get("params") or None,
            running=inbound.key if inbound.key.is_running else None,
        )
        if not await self._store.start_branch(branch, claim=claim):
            return None
        return Route(branch.key, started_branch=True)

    async def _has_turns(self, key: ConversationKey) -> bool:
        return bool(await self._store.recent(key, limit=1, platform_message_ids=False))


__all__ = ["Accepted", "Route", "Routed", "Router"]
