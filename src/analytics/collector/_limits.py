"""Request limits of the collector and the HTTP status each violation gets.

The values follow SPEC.md section 3 (REC collector). Sizes are measured on the
*decompressed* request body, so a gzip or deflate body is judged by what it inflates to.

| rule                                             | answer                                   |
|--------------------------------------------------|------------------------------------------|
| single-event body (``/v1/track`` ...) > 32,768 B | 400 ``payload_too_large``                |
| batch body (``/v1/batch`` ...) > 512,000 B       | 400 ``payload_too_large``                |
| more than 2,500 messages in one batch            | 400 ``too_many_messages`` (whole batch)  |
| one message stored > 32,768 B + 512 B            | 200, item refused as ``message_too_large`` |
| batch context/integrations x messages > 4,096,000 B | 400 ``payload_too_large`` (whole batch) |
| compressed body larger than the limit + 16 KiB   | 400 ``payload_too_large`` (not read)     |

400 is what Segment answers for oversize bodies (SPEC 4.1); official clients drop a batch on
400 instead of retrying it. A batch of more than 2,500 messages is refused as a whole (the
stricter choice SPEC 10 allows) because silently dropping it, as Segment does, hides a client
bug. A single oversize item inside an otherwise good batch is refused on its own, like any other
invalid item, so the rest of the batch is stored.

Limits apply to what is stored: a message is measured after the batch-level ``context`` and
``integrations`` are merged into it and the collector's fields are added (512 bytes are allowed
for those, `analytics._wire.STORED_ALLOWANCE`, so a message a client sent within 32,768 bytes
without a batch context is never refused for them). One request may store at most
``max_stored_request_bytes``: 8 times the request limit, a bound checked before any merge.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics._wire import MAX_MESSAGE_ID_CHARS, MAX_RECEIVED_MESSAGE_BYTES, STORED_ALLOWANCE

__all__ = ["DEFAULT_LIMITS", "Limits"]

# Slack allowed on top of the decompressed limit for the bytes on the wire: gzip framing
# of incompressible data costs a few bytes per 16 KiB block plus a header.
_COMPRESSED_SLACK = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Size and count limits enforced by the collector (bytes are decompressed bytes)."""

    max_message_bytes: int = MAX_RECEIVED_MESSAGE_BYTES
    max_request_bytes: int = 512_000
    max_batch_messages: int = 2_500
    max_message_id_chars: int = MAX_MESSAGE_ID_CHARS
    max_stored_request_bytes: int = 4_096_000

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "max_request_bytes",
            "max_batch_messages",
            "max_stored_request_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")

    @property
    def max_stored_message_bytes(self) -> int:
        """Largest stored form of one message: the limit plus room for the collector's fields."""
        return self.max_message_bytes + STORED_ALLOWANCE

    def body_limit(self, *, batch: bool) -> int:
        """Largest decompressed body accepted on a batch or a single-event endpoint."""
        return self.max_request_bytes if batch else self.max_message_bytes

    def wire_limit(self, *, batch: bool) -> int:
        """Largest body accepted on the wire (before decompression)."""
        return self.body_limit(batch=batch) + _COMPRESSED_SLACK


DEFAULT_LIMITS = Limits()
