"""Many workspaces: installed through Bolt's OAuth flow, each answered with its own token."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from cryptography.fernet import Fernet

from adapters.slack.sink import Scopes
from core.clock import SystemClock
from core.streaming import Pacer, Priority
from tests.adapters.slack.conftest import answered, free_port, listening, settle, slack_env
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import FakeSlack, post_signed_event

STATE = re.compile(r"state=([A-Za-z0-9_\-]+)")


def _database_bytes(directory: Path) -> bytes:
    """The SQLite database's files as they are on disk, the WAL included."""
    return b"".join(path.read_bytes() for path in directory.glob("t.db*"))


async def install(base: str, slack: FakeSlack, team: str) -> int:
    """Click "Add to Slack" as a workspace admin would; returns the redirect's status."""
    async with aiohttp.ClientSession() as browser:
        async with browser.get(f"{base}/slack/install", allow_redirects=False) as page:
            body = await page.text()
            cookie = page.headers.get("Set-Cookie", "").split(";")[0]
        found = STATE.search(body) or STATE.search(page.headers.get("Location", ""))
        assert found is not None, body[:300]
        code = slack.authorize_code(team)
        async with browser.get(
            f"{base}/slack/oauth_redirect",
            params={"code": code, "state": found.group(1)},
            headers={"Cookie": cookie},
            allow_redirects=False,
        ) as back:
            return back.status


def installs_env(slack: FakeSlack, llm: FakeOpenAI, tmp_path: Path, port: int) -> dict[str, str]:
    env = slack_env(slack, llm, tmp_path, http_port=port)
    del env["SLACK_BOT_TOKEN"]
    env.update(
        SLACK_CLIENT_ID=slack.client_id,
        SLACK_CLIENT_SECRET=slack.client_secret,
        THREADLINE_SECRET_KEY=Fernet.generate_key().decode(),
    )
    return env


async def test_two_installed_workspaces_are_answered_apart_and_an_uninstalled_one_no_more(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/slack/events"
    secret = slack.signing_secret
    async with ThreadlineProcess(tmp_path, installs_env(slack, fake_llm, tmp_path, port)) as svc:
        await listening(svc)
        assert await install(base, slack, "T2") == 200
        assert await install(base, slack, "T3") == 200
        forged_state = slack.authorize_code("T4")
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(
                f"{base}/slack/oauth_redirect", params={"code": forged_state, "state": "made-up"}
            ) as refused,
        ):
            assert refused.status >= 400  # no install without a state this server issued

        asked = {}
        for team, channel in (("T2", "C2"), ("T3", "C3")):
            bot = slack.bot_of(team).bot_user_id
            event = slack.message(channel, f"<@{bot}> hello from {team}", team=team)
            asked[team] = event
            status, _, _ = await post_signed_event(
                url, slack.event_payload(event, team=team), secret
            )
            assert status == 200
        for team, channel in (("T2", "C2"), ("T3", "C3")):
            await answered(svc, slack, channel, asked[team]["ts"], f"echo: hello from {team}")

        # T2 removes the app: its token is revoked and Slack says so
        slack.uninstall("T2")
        gone = {"type": "app_uninstalled", "event_ts": slack.next_ts()}
        status, _, _ = await post_signed_event(url, slack.event_payload(gone, team="T2"), secret)
        assert status == 200
        again = slack.message("C2", f"<@{slack.bot_of('T2').bot_user_id}> still there?", team="T2")
        await post_signed_event(url, slack.event_payload(again, team="T2"), secret)
        later = slack.message("C3", f"<@{slack.bot_of('T3').bot_user_id}> and you?", team="T3")
        await post_signed_event(url, slack.event_payload(later, team="T3"), secret)
        await answered(svc, slack, "C3", later["ts"], "echo: and you?")
        await settle()
    assert slack.thread_messages("C2", again["ts"]) == []
    writes = [c for c in slack.calls if c.method.startswith("chat.")]
    assert writes and all(c.team == {"C2": "T2", "C3": "T3"}[c.args["channel"]] for c in writes)
    assert "installed in T2" in svc.output and "installation in T2 removed" in svc.output
    stored = _database_bytes(tmp_path)
    assert b"installations" in stored and b"xoxb-" not in stored  # tokens are sealed at rest
    for token in slack.teams:
        assert token not in svc.output


async def test_a_rotated_token_is_refreshed_before_it_expires_and_the_answer_uses_it(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.token_rotation = True
    slack.token_lifetime = 3  # seconds: expired by the time the message arrives
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with ThreadlineProcess(tmp_path, installs_env(slack, fake_llm, tmp_path, port)) as svc:
        await listening(svc)
        assert await install(base, slack, "T2") == 200
        [first_token] = slack.teams
        await settle(3.5)
        bot = slack.bot_of("T2").bot_user_id
        event = slack.message("C2", f"<@{bot}> rotate please", team="T2")
        status, _, _ = await post_signed_event(
            f"{base}/slack/events", slack.event_payload(event, team="T2"), slack.signing_secret
        )
        assert status == 200
        await answered(svc, slack, "C2", event["ts"], "echo: rotate please")
    refreshes = [
        c for c in slack.calls_of("oauth.v2.access") if c.args.get("grant_type") == "refresh_token"
    ]
    assert refreshes and len(slack.teams) >= 2  # a second token was issued for T2
    assert not [c for c in slack.errors if c.error == "token_expired"]
    assert first_token not in svc.output


async def test_each_workspace_has_its_own_pacing_budget() -> None:
    """Two installed workspaces never share a budget: one workspace's edits running out does
    not slow the other's (the pacer's scopes are keyed by workspace)."""
    pacer = Pacer(SystemClock())
    two, three = Scopes.update("T2"), Scopes.update("T3")
    waiting = None
    for _ in range(20):  # use up T2's chat.update budget until a write has to wait
        attempt = asyncio.ensure_future(pacer.acquire(two, Priority.FINAL))
        await asyncio.sleep(0.02)
        if not attempt.done():
            waiting = attempt
            break
    assert waiting is not None, "T2's budget never ran out"
    await asyncio.wait_for(pacer.acquire(three, Priority.FINAL), 0.5)  # T3 goes at once
    assert not waiting.done()  # while T2 still waits
    await asyncio.wait_for(waiting, 3)  # a T2 token comes back within 60/45 s
    pacer.close()
