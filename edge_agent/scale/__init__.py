"""Weighing-indicator protocols: pure frame decoders and a streaming wrapper.

Every decoder has the pymodbus-framer shape ``decode(buffer) -> (consumed, result)``:
``consumed == 0`` means "need more bytes"; ``result`` is a :class:`Reading`, a
:class:`BadFrame` (a frame-shaped thing that failed its checks) or ``None`` (garbage skipped).
Decoders never raise on input bytes and never return a weight that did not pass every check
the protocol offers.
"""

from __future__ import annotations

from edge_agent.scale.frames import BadFrame, Decoded, Decoder, Reading
from edge_agent.scale.regex_format import RegexDecoder
from edge_agent.scale.sics import SicsDecoder
from edge_agent.scale.stream import ScaleStream, StreamStats
from edge_agent.scale.toledo import ToledoDecoder
from edge_agent.scale.xk3190 import Xk3190Decoder, Xk3190Format2Decoder

__all__ = [
    "BadFrame",
    "Decoded",
    "Decoder",
    "Reading",
    "RegexDecoder",
    "ScaleStream",
    "SicsDecoder",
    "StreamStats",
    "ToledoDecoder",
    "Xk3190Decoder",
    "Xk3190Format2Decoder",
    "make_decoder",
]


def make_decoder(protocol: str, **options: object) -> Decoder:
    """Build the decoder named in a site config (``scale.protocol``)."""
    if protocol == "xk3190":
        return Xk3190Decoder()
    if protocol == "xk3190_format2":
        return Xk3190Format2Decoder()
    if protocol == "toledo":
        return ToledoDecoder(checksum=bool(options.get("checksum", True)))
    if protocol == "sics":
        return SicsDecoder()
    if protocol == "regex":
        pattern = options.get("pattern")
        if not isinstance(pattern, str):
            raise ValueError("the regex protocol needs a 'pattern' with a (?P<weight>...) group")
        terminator = options.get("terminator", "\r\n")
        return RegexDecoder(pattern, terminator=str(terminator))
    raise ValueError(f"unknown scale protocol {protocol!r}")
