"""Test-side encoders for indicator frames, written from DESIGN.md §5 independently of the
simulator's, so decoder and simulator cross-check each other."""

from __future__ import annotations


def xk_frame(kg: int, decimals: int = 0) -> bytes:
    sign = b"-" if kg < 0 else b"+"
    body = sign + b"%06d" % abs(kg) + str(decimals).encode()
    x = 0
    for b in body:
        x ^= b
    hi, lo = x >> 4, x & 0xF
    enc = bytes([h + 0x30 if h <= 9 else h + 0x37 for h in (hi, lo)])
    return b"\x02" + body + enc + b"\x03"


def xk2_frame(kg: int, decimals: int = 0) -> bytes:
    digits = f"{abs(kg):06d}"
    text = digits if decimals == 0 else digits[: 6 - decimals] + "." + digits[6 - decimals :]
    return b"=" + text[::-1].encode() + (b"-" if kg < 0 else b"+")


def toledo_frame(
    kg: int, *, tare: int = 0, motion: bool = False, checksum: bool = True, swa_dec: int = 2
) -> bytes:
    swa = 0x20 | swa_dec | (1 << 3)
    swb = 0x20 | (0x02 if kg < 0 else 0) | (0x08 if motion else 0) | 0x10
    swc = 0x20
    body = bytes([0x02, swa, swb, swc]) + b"%06d" % abs(kg) + b"%06d" % tare + b"\r"
    if checksum:
        body += bytes([(-sum(body)) & 0x7F])
    return body


def sics_line(kg: int, stable: bool = True) -> bytes:
    return b"S %s %10d kg\r\n" % (b"S" if stable else b"D", kg)
