"""An incremental Server-Sent Events parser over raw bytes: the `data` of each event, as text.

Written for the streaming client's hot path instead of httpx-sse, which needs a text response
and several generator layers per event (measured: about 3.4 µs of the client's CPU per delta).
It follows the WHATWG event-stream interpretation for what the client needs:

- lines end in CRLF, LF or CR, in any mix, and may be cut between chunks anywhere, including
  between the CR and LF of one line ending and inside multi-byte UTF-8 characters;
- `data:` lines, with or without one space after the colon, are collected; several of them in
  one event are joined with `\\n`; a `data` line without a colon adds an empty line;
- comment lines (starting with `:`) and the `event`, `id` and `retry` fields, and any unknown
  field, are ignored;
- a blank line dispatches the event if it had at least one `data` line;
- a leading byte order mark is skipped; text is decoded as UTF-8, invalid bytes replaced;
- an event that is not ended by a blank line when the stream ends is never dispatched (as in
  the specification and in httpx-sse).
"""

from __future__ import annotations

_BOM = b"\xef\xbb\xbf"
_COLON = 0x3A


class EventStreamParser:
    """Feed it the body's bytes as they arrive; each `feed` returns the events it completed."""

    __slots__ = ("_at_start", "_data", "_head", "_line", "_skip_lf")

    def __init__(self) -> None:
        self._line = b""  # the start of a line whose end has not arrived yet
        self._data: list[bytes] = []  # the data lines of the event being read
        self._skip_lf = False  # the last chunk ended in CR: a leading LF is part of that ending
        self._at_start = True  # nothing but a possible byte order mark seen yet
        self._head = b""  # the first bytes while they could still be a byte order mark

    def feed(self, chunk: bytes) -> list[str]:
        """The `data` of every event that `chunk` completed, in order."""
        if not chunk:
            return []
        if self._at_start:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._at_start = False
            self._head = b""
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        if self._line:
            lines[0] = self._line + lines[0]
        self._line = lines.pop()
        events: list[str] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    joined = data[0] if len(data) == 1 else b"\n".join(data)
                    events.append(joined.decode("utf-8", "replace"))
                    data.clear()
            elif line.startswith(b"data: "):
                data.append(line[6:])
            elif line[0] == _COLON:
                continue  # a comment
            else:
                name, _, value = line.partition(b":")
                if name == b"data":
                    data.append(value[1:] if value.startswith(b" ") else value)
                # event, id, retry and unknown fields are not needed
        return events
