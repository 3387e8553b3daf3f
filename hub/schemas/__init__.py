"""The hub's wire contract: its topics (`topics`), the envelope and CloudEvents form of every event
(`envelope`), the Avro schemas (*.avsc) and the codec that reads and writes them."""

from hub.schemas.codec import Codec, CodecError, Event, default_codec

__all__ = ["Codec", "CodecError", "Event", "default_codec"]
