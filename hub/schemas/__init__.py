"""Avro schemas of every hub event (*.avsc) and the codec that reads and writes them."""

from hub.schemas.codec import Codec, CodecError, Event, default_codec

__all__ = ["Codec", "CodecError", "Event", "default_codec"]
