"""Builds the running parts (HTTP and LLM clients, store, pacer, driver, service) from Settings."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.caps import ParamCaps
from core.clock import SystemClock
from core.context import TokenCounter
from core.errors import ConfigError
from core.llm import ChatCompletionsClient, ChatParams, LLMEndpoint
from core.service import ChatService, ServiceConfig
from core.settings import DEFAULT_CONTEXT_WINDOW, Settings
from core.store import HistoryStore
from core.streaming import Pacer, StreamDriver

USER_KEY_FILE = Path("data/user-hash.key")

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one threadline process runs on; close it with `aclose()`."""

    settings: Settings
    http: httpx.AsyncClient
    llm: ChatCompletionsClient
    store: HistoryStore
    pacer: Pacer
    driver: StreamDriver
    counter: TokenCounter
    service: ChatService
    ready: dict[str, asyncio.Event] = field(default_factory=dict)
    """Each running channel's "connected" event, by platform, for `/readyz`."""

    async def aclose(self) -> None:
        """Close the store and the HTTP client."""
        try:
            await self.store.close()
        finally:
            await self.http.aclose()


def chat_params(settings: Settings) -> ChatParams:
    """The default Chat Completions parameters; a bad value names its THREADLINE_* setting."""
    try:
        return ChatParams(
            model=settings.model,
            temperature=settings.temperature,
            top_p=settings.top_p,
            n=settings.n,
            stop=settings.stop,
            max_tokens=settings.max_tokens,
            max_completion_tokens=settings.max_completion_tokens,
            presence_penalty=settings.presence_penalty,
            frequency_penalty=settings.frequency_penalty,
            logit_bias=settings.logit_bias,
            seed=settings.seed,
        )
    except ConfigError as exc:
        raise ConfigError(f"THREADLINE_{exc.setting.upper()}", exc.message) from None


def llm_endpoint(settings: Settings) -> LLMEndpoint:
    """Where the Chat Completions server is and how to authenticate."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return LLMEndpoint(
        base_url=settings.openai_base_url.rstrip("/"),
        api_key=key or None,
        auth_style=settings.effective_auth_style(),
        api_version=settings.effective_api_version(),
        connect_timeout=settings.connect_timeout,
        first_token_timeout=settings.first_token_timeout,
        chunk_timeout=settings.chunk_timeout,
        total_timeout=settings.total_timeout,
        max_retries=settings.max_retries,
        include_usage=settings.include_usage,
    )


def user_hash_key(settings: Settings) -> bytes | None:
    """The key for the `user` pseudonym: the setting, else a random one kept in data/."""
    if not settings.send_user:
        return None
    if settings.user_hash_key is not None:
        return settings.user_hash_key.get_secret_value().encode()
    if USER_KEY_FILE.exists():
        return USER_KEY_FILE.read_bytes().strip()
    USER_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    partial = USER_KEY_FILE.with_name(f"{USER_KEY_FILE.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    try:
        os.link(partial, USER_KEY_FILE)  # atomic: the first process to start wins
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return USER_KEY_FILE.read_bytes().strip()


def param_caps(settings: Settings, params: ChatParams) -> ParamCaps:
    """The operator's caps; a configured default over a cap stops start-up, naming it."""
    caps = ParamCaps(
        max_n=settings.max_n,
        max_tokens=settings.max_tokens_cap,
        allowed_models=settings.allowed_models,
        max_logit_bias=settings.max_logit_bias,
    )
    for setting, name, value in (
        ("THREADLINE_N", "n", params.n),
        ("THREADLINE_MAX_TOKENS", "max_tokens", params.max_tokens),
        ("THREADLINE_MAX_COMPLETION_TOKENS", "max_completion_tokens", params.max_completion_tokens),
        ("THREADLINE_MODEL", "model", params.model),
        ("THREADLINE_LOGIT_BIAS", "logit_bias", params.logit_bias),
    ):
        refusal = None if value is None else caps.check(name, value)
        if refusal is not None:
            raise ConfigError(setting, f"{refusal}, the operator's cap")
    return caps


def service_config(settings: Settings, *, context_window: int | None = None) -> ServiceConfig:
    """The service's part of the settings; `context_window` is the one discovered at start."""
    params = chat_params(settings)
    return ServiceConfig(
        system_prompt=settings.system_prompt,
        params=params,
        caps=param_caps(settings, params),
        user_rate=settings.user_rate,
        max_answers=settings.max_answers,
        user_answers=settings.user_answers,
        user_queue=settings.user_queue,
        context_window=settings.context_window or context_window or DEFAULT_CONTEXT_WINDOW,
        reply_tokens=settings.reply_tokens,
        history_turns=settings.history_turns,
        user_hash_key=user_hash_key(settings),
        save_interval=settings.save_interval,
        stale_after=settings.stale_after,
        shutdown_grace=settings.shutdown_grace,
    )


async def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Validate what is left to validate, open the store (migrating it) and wire the service."""
    config = service_config(settings)
    endpoint = llm_endpoint(settings)
    clock = SystemClock()
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=endpoint.connect_timeout,
            read=endpoint.chunk_timeout,
            write=endpoint.connect_timeout,
            pool=endpoint.connect_timeout,
        ),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )
    try:
        store = await HistoryStore.open(
            settings.database_url.get_secret_value(),
            migrate=migrate,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
    except BaseException:
        await http.aclose()
        raise
    llm = ChatCompletionsClient(http, endpoint)
    try:
        config = await discover_context_window(settings, config, llm)
    except BaseException:
        await store.close()
        await http.aclose()
        raise
    pacer = Pacer(clock)
    driver = StreamDriver(pacer, clock)
    counter = TokenCounter()
    await asyncio.to_thread(counter.warm_up, config.params.model)
    service = ChatService(store=store, llm=llm, driver=driver, counter=counter, config=config)
    return Runtime(settings, http, llm, store, pacer, driver, counter, service)


async def discover_context_window(
    settings: Settings, config: ServiceConfig, llm: ChatCompletionsClient
) -> ServiceConfig:
    """With THREADLINE_CONTEXT_WINDOW unset, use what the server publishes for the model.

    A size learned later from a length rejection (stored per model) still wins over it.
    ConfigError when the reply limit set does not fit the discovered window.
    """
    if settings.context_window is not None:
        return config
    model = config.params.model
    published = await llm.published_context_window(model)
    if published is None:
        log.info(
            "%s publishes no context size for %s; assuming %d tokens until a length rejection "
            "says otherwise (set THREADLINE_CONTEXT_WINDOW to choose)",
            llm.endpoint.base_url,
            model,
            DEFAULT_CONTEXT_WINDOW,
        )
        return config
    log.info("%s publishes a context of %d tokens for %s", llm.endpoint.base_url, published, model)
    for name, value in (
        ("THREADLINE_MAX_TOKENS", settings.max_tokens),
        ("THREADLINE_MAX_COMPLETION_TOKENS", settings.max_completion_tokens),
    ):
        if value is not None and value >= published:
            raise ConfigError(
                name,
                f"({value}) must be smaller than the context window the server publishes for "
                f"{model} ({published}), or no history fits",
            )
    return dataclasses.replace(config, context_window=published)


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the collector's reach.

    The ~100k objects of the imported SDKs and the runtime never die; without this every full
    collection walks them and stalls the event loop for ~50 ms (measured by
    bench.inbound_overhead as its p99).
    """
    gc.collect()
    gc.freeze()
