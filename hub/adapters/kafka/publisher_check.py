"""The publisher check of consumed records: with an identity configuration (`HUB_PUBLISHERS`) a
record on a signed topic that is unsigned, badly signed, or whose identity fields its signer may not
use is dead-lettered before any consumer decodes it (`hub.domain.publishers` decides)."""

from __future__ import annotations

from typing import Any

from hub import metrics
from hub.adapters.kafka.publisher import Publisher
from hub.domain import publishers as identity
from hub.schemas.codec import Codec, CodecError


class PublisherCheck:
    def __init__(self, publishers: identity.Publishers | None, signed_topics: frozenset[str], codec: Codec, publisher: Publisher) -> None:
        self.publishers = publishers
        self.signed_topics = signed_topics
        self.codec = codec
        self.publisher = publisher

    def checks_publishers(self, topic: str) -> bool:
        """Whether records of `topic` go through `refuse` (a signed topic with publishers configured);
        a batch consumer skips the call for the others."""
        return self.publishers is not None and topic in self.signed_topics

    async def refuse(self, msg) -> Any:
        """The publisher check of one consumed record: on a signed topic a record that is unsigned,
        badly signed, or whose identity fields its signer may not use goes to dead letters (reason
        `forbidden` etc.); returns that dead letter's send future, None when the record may be
        processed. A signed record that does not decode passes: its consumer dead-letters it with
        the codec's reason."""
        if not self.checks_publishers(msg.topic):
            return None
        raw = msg.value if isinstance(msg.value, (bytes, bytearray)) else b""
        verdict = identity.authenticate(msg.headers, raw, self.publishers)
        if verdict.allowed:
            try:
                decoded = self.codec.decode(raw)
            except CodecError:
                return None
            verdict = identity.authorize(self.publishers.by_id[verdict.publisher], decoded.name, decoded.record,
                                         identity.header(msg.headers, identity.EVENT_ID_HEADER))
            if verdict.allowed:
                return None
        sends: list = []
        first = not self.publisher.dead_lettered_already(msg)
        await self.publisher.dead_letter_acked(msg, verdict.reason, verdict.message, sends)
        if first:
            metrics.events_consumed.labels(msg.topic, "dead_letter").inc()
        return sends[0]
