"""Protect and unprotect QUIC client Initial packets (RFC 9001 section 5), for the QUIC target.

Mutating an encrypted Initial only ever tests the AEAD tag check. The QUIC target therefore also
mutates the *plaintext* of an Initial and protects it properly before feeding it, so the frame
walker, CRYPTO reassembly and ClientHello parser behind the decryption see every mutation. The
seeds for that come from real Initials decrypted here. Keys come from the inspector's public
``initial_key_material``; the AES work is done here with ``cryptography``, independently.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fuzz.surface import MalformedError, quic

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF  # RFC 9369: its Initial has packet type bits 01, not 00
# Versions whose client Initials are encrypted, one per salt and frame dialect the inspector knows.
ENCRYPTED_VERSIONS = (
    QUIC_V1,
    QUIC_V2,
    0xFF00001D,  # draft-29
    0xFF000016,  # draft-22
    0xFACEB002,  # mvfst-27
    int.from_bytes(b"Q050", "big"),  # gQUIC frames, CHLO in CRYPTO frames
    int.from_bytes(b"T051", "big"),  # gQUIC frames, TLS ClientHello in CRYPTO frames
)


def varint(value: int) -> bytes:
    """RFC 9000 variable-length integer, shortest form."""
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return (0x4000 | value).to_bytes(2, "big")
    if value < 0x40000000:
        return (0x80000000 | value).to_bytes(4, "big")
    return ((0xC0 << 56) | value).to_bytes(8, "big")


def _read_varint(b: bytes, pos: int) -> tuple[int, int]:
    size = 1 << (b[pos] >> 6)
    if pos + size > len(b):
        raise IndexError("truncated varint")
    return int.from_bytes(bytes([b[pos] & 0x3F]) + b[pos + 1 : pos + size], "big"), pos + size


def _mask(hp: bytes, sample: bytes) -> bytes:
    return Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)


def protect(version: int, dcid: bytes, payload: bytes, pn: int = 0, pn_len: int = 2) -> bytes:
    """A client Initial of ``version`` to ``dcid`` carrying ``payload`` (frames), protected."""
    key, iv, hp = quic.initial_key_material(version, dcid)
    if pn_len + len(payload) < 4:  # the header-protection sample needs 4 bytes after the pn start
        payload += bytes(4 - pn_len - len(payload))
    wire_type = 1 if version == QUIC_V2 else 0
    header = bytearray([0xC0 | (wire_type << 4) | (pn_len - 1)]) + version.to_bytes(4, "big")
    header += bytes([len(dcid)]) + dcid + b"\x00"  # empty SCID
    header += b"\x00"  # empty token
    header += (0x4000 | (pn_len + len(payload) + 16)).to_bytes(2, "big")
    pn_at = len(header)
    header += (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    sealed = AESGCM(key).encrypt(nonce, payload, bytes(header))
    mask = _mask(hp, sealed[4 - pn_len : 20 - pn_len])
    header[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        header[pn_at + i] ^= mask[1 + i]
    return bytes(header) + sealed


def unprotect(datagram: bytes) -> tuple[int, bytes, bytes] | None:
    """(version, DCID, plaintext) of the client Initial a datagram starts with; None if it is not
    one that decrypts (server packets, other packet types, gQUIC in the clear, damage)."""
    try:
        b0 = datagram[0]
        if b0 & 0xC0 != 0xC0:
            return None
        version = int.from_bytes(datagram[1:5], "big")
        if version not in ENCRYPTED_VERSIONS and not 0xFF000016 <= version <= 0xFF000022:
            return None
        if (b0 >> 4) & 3 != (1 if version == QUIC_V2 else 0):
            return None
        p = 5
        dcid = datagram[p + 1 : p + 1 + datagram[p]]
        p += 1 + len(dcid)
        p += 1 + datagram[p]
        token_len, p = _read_varint(datagram, p)
        p += token_len
        length, p = _read_varint(datagram, p)
        key, iv, hp = quic.initial_key_material(version, dcid)
        mask = _mask(hp, datagram[p + 4 : p + 20])
        first = b0 ^ (mask[0] & 0x0F)
        pn_len = (first & 3) + 1
        pn_bytes = bytes(datagram[p + i] ^ mask[1 + i] for i in range(pn_len))
        header = bytes([first]) + datagram[1:p] + pn_bytes
        nonce = (int.from_bytes(iv, "big") ^ int.from_bytes(pn_bytes, "big")).to_bytes(12, "big")
        plain = AESGCM(key).decrypt(nonce, datagram[p + pn_len : p + length], header)
        return version, dcid, plain
    except (IndexError, ValueError, MalformedError):
        return None
    except Exception as err:  # cryptography's InvalidTag: not a client Initial after all
        if type(err).__name__ == "InvalidTag":
            return None
        raise
