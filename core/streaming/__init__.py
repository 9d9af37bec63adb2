"""Streaming policy: sink protocol, pacing, splitting and the stream driver."""

from core.streaming.driver import ReplyStream, StreamDriver, StreamResult
from core.streaming.pacer import Pacer, Priority, ScopeStats
from core.streaming.policy import StreamPolicy
from core.streaming.sink import (
    PaceScope,
    ReplySink,
    ResumableSink,
    Reviver,
    SinkLimits,
    WriteKind,
    count_chars,
    count_utf16,
)
from core.streaming.split import (
    Cut,
    Piece,
    cut_full_part,
    finish_text,
    split_final,
    split_pieces,
    visible_preview,
)

__all__ = [
    "Cut",
    "PaceScope",
    "Pacer",
    "Piece",
    "Priority",
    "ReplySink",
    "ReplyStream",
    "ResumableSink",
    "Reviver",
    "ScopeStats",
    "SinkLimits",
    "StreamDriver",
    "StreamPolicy",
    "StreamResult",
    "WriteKind",
    "count_chars",
    "count_utf16",
    "cut_full_part",
    "finish_text",
    "split_final",
    "split_pieces",
    "visible_preview",
]
