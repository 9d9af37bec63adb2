"""The assistant pane and agent sessions: prompts, title, viewed channel, session status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.slack.api import SlackApi
from adapters.slack.sink import Scopes, SlackTarget
from core.errors import SinkError, SinkRateLimited
from core.streaming import Priority
from core.tasks import TaskSet

log = logging.getLogger(__name__)

PROCESSING = "processing"
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class AssistantSettings:
    """What a new assistant thread shows: its title and suggested prompts (title, message)."""

    title: str = "Chat with threadline"
    prompts: Sequence[tuple[str, str]] = (
        ("Explain something", "Explain how a token bucket rate limiter works."),
        ("Write code", "Write a Python function that merges two sorted lists."),
        ("Summarise", "Summarise the key points of our discussion so far."),
    )


def viewed_channel(event: Mapping[str, Any]) -> str | None:
    """The channel the user is viewing, from an assistant thread event's context."""
    thread = event.get("assistant_thread") or {}
    context = thread.get("context") or {}
    channel = context.get("channel_id")
    return str(channel) if channel else None


def context_note(channel: str | None) -> str | None:
    """What the model is told about the channel the user is viewing (None: nothing)."""
    if not channel:
        return None
    return (
        f"The user opened this chat while viewing the Slack channel <#{channel}> "
        f"(id {channel}); questions about 'this channel' refer to it."
    )


async def set_up_thread(
    api: SlackApi, space: str, channel: str, thread_ts: str, settings: AssistantSettings
) -> None:
    """Suggested prompts and the title of a new assistant thread (failures only logged)."""
    try:
        if settings.prompts:
            await api.call(
                "assistant.threads.setSuggestedPrompts",
                scopes=Scopes.tier3(space, "assistant.threads.setSuggestedPrompts"),
                priority=Priority.FIRST,
                channel_id=channel,
                thread_ts=thread_ts,
                title="Try asking",
                prompts=[{"title": t, "message": m} for t, m in settings.prompts],
            )
        if settings.title:
            await api.call(
                "assistant.threads.setTitle",
                scopes=Scopes.tier3(space, "assistant.threads.setTitle"),
                priority=Priority.FIRST,
                channel_id=channel,
                thread_ts=thread_ts,
                title=settings.title,
            )
    except SinkError as exc:
        log.info("could not set up assistant thread %s: %s", thread_ts, exc)


class AgentSessions:
    """`agents.sessions.setStatus` around each answer, where the app is declared an agent.

    Statuses are sent in the background by one worker per thread, latest wish first (a
    "processing" still queued when "active" is wanted is never sent), so they never delay an
    answer. A workspace's first call is a probe: refused (not an agent, a missing scope, an
    unknown method), the workspace is not asked again. Failures never affect the answer.
    """

    def __init__(self, tasks: TaskSet, *, enabled: bool = True) -> None:
        self._tasks = tasks
        self.enabled = enabled
        self.available: dict[str, bool] = {}
        self._probes: dict[str, asyncio.Event] = {}
        self._wanted: dict[tuple[str, str, str], tuple[SlackApi, SlackTarget, str]] = {}
        self._sent: dict[tuple[str, str, str], str] = {}
        self.calls = 0

    def want(self, api: SlackApi, target: SlackTarget, status: str) -> None:
        """Ask for `status` in the target's thread (sent soon, unless a newer wish replaces it)."""
        if not self.enabled or self.available.get(target.space) is False:
            return
        thread = (target.space, target.channel, target.thread_ts)
        working = thread in self._wanted
        self._wanted[thread] = (api, target, status)
        if not working:
            self._tasks.spawn(self._work(thread))

    async def _work(self, thread: tuple[str, str, str]) -> None:
        try:
            while thread in self._wanted:
                api, target, status = self._wanted[thread]
                if self._sent.get(thread) != status and await self._usable(target.space):
                    await self._send(api, target, status)
                if self._wanted.get(thread) == (api, target, status):
                    break
        finally:
            self._wanted.pop(thread, None)
            if self._sent.get(thread) == ACTIVE:
                self._sent.pop(thread, None)  # idle threads are not remembered

    async def _usable(self, space: str) -> bool:
        known = self.available.get(space)
        if known is not None:
            return known
        probe = self._probes.get(space)
        if probe is not None:  # another thread is finding out
            await probe.wait()
            return self.available.get(space, False)
        self._probes[space] = asyncio.Event()
        return True  # this call is the probe

    async def _send(self, api: SlackApi, target: SlackTarget, status: str) -> None:
        thread = (target.space, target.channel, target.thread_ts)
        self.calls += 1
        try:
            await api.call(
                "agents.sessions.setStatus",
                scopes=Scopes.tier3(target.space, "agents.sessions.setStatus"),
                priority=Priority.EDIT,
                channel_id=target.channel,
                thread_ts=target.thread_ts,
                status=status,
                initiator_user_id=target.user if status == PROCESSING and target.user else None,
            )
            self._sent[thread] = status
            self._settle(target.space, True)
        except SinkRateLimited as exc:
            log.info("agent session status %s in %s rate limited: %s", status, target, exc)
            probe = self._probes.pop(target.space, None)
            if probe is not None:  # undecided: the next wish probes again
                probe.set()
        except SinkError as exc:
            if self.available.get(target.space) is None:
                log.info("agent sessions unavailable in %s (%s)", target.space, exc)
                self._settle(target.space, False)
            else:
                log.info("agent session status %s in %s failed: %s", status, target, exc)

    def _settle(self, space: str, available: bool) -> None:
        if space not in self.available:
            self.available[space] = available
        probe = self._probes.pop(space, None)
        if probe is not None:
            probe.set()
