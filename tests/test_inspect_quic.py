"""Tests for classifier.inspect.quic: the ClientHello (or gQUIC CHLO) out of a QUIC client's first flight.

Ground truth comes from outside this module: the RFC 9001 / RFC 9369 appendix A vectors, a
draft-23 vector, Initials built by aioquic (a real QUIC stack), and tshark's reading of the real
captures. Packets this file builds itself (re-split CRYPTO frames, gQUIC) use the helpers below.
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import sys
from collections import OrderedDict

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import (
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from conftest import REAL, need_shared
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from classifier.errors import MalformedError
from classifier.inspect import quic
from classifier.inspect.quic import (
    MAX_CRYPTO_BYTES,
    MAX_DATAGRAMS,
    QuicFacts,
    QuicInitialState,
    initial_key_material,
    looks_like_quic,
    version_name,
)

V1 = 0x00000001
V2 = 0x6B3343CF
DRAFT_23 = 0xFF000017
DRAFT_27 = 0xFF00001B
DRAFT_29 = 0xFF00001D
Q043 = int.from_bytes(b"Q043", "big")
Q046 = int.from_bytes(b"Q046", "big")
Q050 = int.from_bytes(b"Q050", "big")
T051 = int.from_bytes(b"T051", "big")

# --- RFC 9001 appendix A (QUIC v1) ----------------------------------------------------------

RFC_DCID = bytes.fromhex("8394c8f03e515708")

# A.2: the client Initial, protected (1200 bytes). Its CRYPTO frame holds a ClientHello for
# example.com offering ALPN "alpn".
RFC9001_CLIENT_INITIAL = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934"
)

# A.2: the unprotected CRYPTO frame (before the PADDING that fills the packet).
RFC9001_CRYPTO_FRAME = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff"
)

# A.4: a Retry from the server (new SCID f067a5502a4262b5, token "token").
RFC9001_RETRY = bytes.fromhex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba")

# --- RFC 9369 appendix A (QUIC v2): same ClientHello, v2 salt, labels and type bits -----------

RFC9369_CLIENT_INITIAL = bytes.fromhex(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc"
)

# --- draft-ietf-quic-tls-23 appendix A: the draft-23..28 salt, ClientHello for "server" -------

DRAFT23_CLIENT_INITIAL = bytes.fromhex(
    "c0ff000017088394c8f03e5157080000449e3b343aa8535064a4268a0d9d7b1c"
    "9d250ae355162276e9b1e3011ef6bbc0ab48ad5bcc2681e953857ca62becd752"
    "4daac473e68d7405fbba4e9ee616c87038bdbe908c06d9605d9ac49030359eec"
    "b1d05a14e117db8cede2bb09d0dbbfee271cb374d8f10abec82d0f59a1dee29f"
    "e95638ed8dd41da07487468791b719c55c46968eb3b54680037102a28e53dc1d"
    "12903db0af5821794b41c4a93357fa59ce69cfe7f6bdfa629eef78616447e1d6"
    "11c4baf71bf33febcb03137c2c75d25317d3e13b684370f668411c0f00304b50"
    "1c8fd422bd9b9ad81d643b20da89ca0525d24d2b142041cae0af205092e43008"
    "0cd8559ea4c5c6e4fa3f66082b7d303e52ce0162baa958532b0bbc2bc785681f"
    "cf37485dff6595e01e739c8ac9efba31b985d5f656cc092432d781db95221724"
    "87641c4d3ab8ece01e39bc85b15436614775a98ba8fa12d46f9b35e2a55eb72d"
    "7f85181a366663387ddc20551807e007673bd7e26bf9b29b5ab10a1ca87cbb7a"
    "d97e99eb66959c2a9bc3cbde4707ff7720b110fa95354674e395812e47a0ae53"
    "b464dcb2d1f345df360dc227270c750676f6724eb479f0d2fbb6124429990457"
    "ac6c9167f40aab739998f38b9eccb24fd47c8410131bf65a52af841275d5b3d1"
    "880b197df2b5dea3e6de56ebce3ffb6e9277a82082f8d9677a6767089b671ebd"
    "244c214f0bde95c2beb02cd1172d58bdf39dce56ff68eb35ab39b49b4eac7c81"
    "5ea60451d6e6ab82119118df02a586844a9ffe162ba006d0669ef57668cab38b"
    "62f71a2523a084852cd1d079b3658dc2f3e87949b550bab3e177cfc49ed190df"
    "f0630e43077c30de8f6ae081537f1e83da537da980afa668e7b7fb25301cf741"
    "524be3c49884b42821f17552fbd1931a813017b6b6590a41ea18b6ba49cd48a4"
    "40bd9a3346a7623fb4ba34a3ee571e3c731f35a7a3cf25b551a680fa68763507"
    "b7fde3aaf023c50b9d22da6876ba337eb5e9dd9ec3daf970242b6c5aab3aa4b2"
    "96ad8b9f6832f686ef70fa938b31b4e5ddd7364442d3ea72e73d668fb0937796"
    "f462923a81a47e1cee7426ff6d9221269b5a62ec03d6ec94d12606cb485560ba"
    "b574816009e96504249385bb61a819be04f62c2066214d8360a2022beb316240"
    "b6c7d78bbe56c13082e0ca272661210abf020bf3b5783f1426436cf9ff418405"
    "93a5d0638d32fc51c5c65ff291a3a7a52fd6775e623a4439cc08dd25582febc9"
    "44ef92d8dbd329c91de3e9c9582e41f17f3d186f104ad3f90995116c682a2a14"
    "a3b4b1f547c335f0be710fc9fc03e0e587b8cda31ce65b969878a4ad4283e6d5"
    "b0373f43da86e9e0ffe1ae0fddd3516255bd74566f36a38703d5f34249ded1f6"
    "6b3d9b45b9af2ccfefe984e13376b1b2c6404aa48c8026132343da3f3a33659e"
    "c1b3e95080540b28b7f3fcd35fa5d843b579a84c089121a60d8c1754915c344e"
    "eaf45a9bf27dc0c1e78416169122091313eb0e87555abd706626e557fc36a04f"
    "cd191a58829104d6075c5594f627ca506bf181daec940f4a4f3af0074eee89da"
    "acde6758312622d4fa675b39f728e062d2bee680d8f41a597c262648bb18bcfc"
    "13c8b3d97b1a77b2ac3af745d61a34cc4709865bac824a94bb19058015e4e42d"
    "c9be6c7803567321829dd85853396269"
)


# --- builders -------------------------------------------------------------------------------


def varint(v: int, size: int | None = None) -> bytes:
    """RFC 9000 variable-length integer, in ``size`` bytes (1, 2, 4, 8) or the shortest."""
    if size is None:
        size = 1 if v < 0x40 else 2 if v < 0x4000 else 4 if v < 0x40000000 else 8
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    return ((prefix << (8 * size - 2)) | v).to_bytes(size, "big")


def crypto_frame(offset: int, data: bytes, ftype: int = 0x06) -> bytes:
    return bytes([ftype]) + varint(offset) + varint(len(data)) + data


def protect(
    version: int,
    dcid: bytes,
    payload: bytes,
    *,
    pn: int = 0,
    pn_len: int = 2,
    scid: bytes = b"",
    token: bytes = b"",
    key_dcid: bytes | None = None,
    packet_type: int = 0,
) -> bytes:
    """A client Initial (or, with ``packet_type``, another long-header packet) protected the
    RFC 9001 way with the cryptography package, independently of the code under test."""
    key, iv, hp = initial_key_material(version, key_dcid if key_dcid is not None else dcid)
    if pn_len + len(payload) < 4:  # the header-protection sample needs 4 bytes after pn start
        payload += bytes(4 - pn_len - len(payload))
    wire_type = {0: 1, 1: 2, 2: 3, 3: 0}[packet_type] if version == V2 else packet_type
    first = 0xC0 | (wire_type << 4) | (pn_len - 1)
    header = bytearray([first]) + version.to_bytes(4, "big")
    header += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if packet_type == 0:
        header += varint(len(token)) + token
    header += varint(pn_len + len(payload) + 16, 2)
    pn_at = len(header)
    header += (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")  # truncated on the wire
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    sealed = AESGCM(key).encrypt(nonce, payload, bytes(header))
    sample = sealed[4 - pn_len : 20 - pn_len]
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)
    header[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        header[pn_at + i] ^= mask[1 + i]
    return bytes(header) + sealed


def unprotect(packet: bytes) -> tuple[int, bytes, bytes]:
    """(version, DCID, plaintext) of a single client Initial: the inverse of :func:`protect`."""
    version = int.from_bytes(packet[1:5], "big")
    dcid = packet[6 : 6 + packet[5]]
    p = 6 + len(dcid)
    p += 1 + packet[p]
    buf = Buffer(data=packet[p:])
    buf.pull_bytes(buf.pull_uint_var())
    length = buf.pull_uint_var()
    pn_at = p + buf.tell()
    key, iv, hp = initial_key_material(version, dcid)
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(packet[pn_at + 4 : pn_at + 20])
    first = packet[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 3) + 1
    pn_bytes = bytes(packet[pn_at + i] ^ mask[1 + i] for i in range(pn_len))
    header = bytes([first]) + packet[1:pn_at] + pn_bytes
    nonce = (int.from_bytes(iv, "big") ^ int.from_bytes(pn_bytes, "big")).to_bytes(12, "big")
    return version, dcid, AESGCM(key).decrypt(nonce, packet[pn_at + pn_len : pn_at + length], header)


def crypto_stream(plaintexts: list[bytes]) -> bytes:
    """The CRYPTO stream of decrypted Initial payloads holding only CRYPTO, PADDING and PING."""
    stream = bytearray()
    for b in plaintexts:
        pos = 0
        while pos < len(b):
            if b[pos] in (0, 1):
                pos += 1
                continue
            assert b[pos] == 0x06, f"unexpected frame {b[pos]:#x}"
            buf = Buffer(data=b[pos + 1 :])
            offset, length = buf.pull_uint_var(), buf.pull_uint_var()
            start = pos + 1 + buf.tell()
            if len(stream) < offset + length:
                stream.extend(bytes(offset + length - len(stream)))
            stream[offset : offset + length] = b[start : start + length]
            pos = start + length
    return bytes(stream)


def aioquic_flight(
    version: int = V1, server_name: str = "www.tiktok.com", alpn: tuple[str, ...] = ("h3",)
) -> tuple[QuicConnection, list[bytes]]:
    """A real client's first datagrams, from aioquic."""
    config = QuicConfiguration(
        is_client=True, server_name=server_name, alpn_protocols=list(alpn), supported_versions=[version]
    )
    conn = QuicConnection(configuration=config)
    conn.connect(("192.0.2.1", 443), now=0.0)
    return conn, [d for d, _addr in conn.datagrams_to_send(now=0.0)]


def big_alpn(n: int = 20) -> tuple[str, ...]:
    """ALPN names that push a ClientHello past one 1200-byte datagram (like a PQ key share)."""
    return tuple(f"proto-{i:02d}-" + "x" * 190 for i in range(n))


def aioquic_client_hello(version: int = V1, **kw) -> bytes:
    """The ClientHello handshake message (type, length, body) aioquic sends."""
    _conn, dgs = aioquic_flight(version, **kw)
    return crypto_stream([unprotect(d)[2] for d in dgs])


def feed_all(state: QuicInitialState, datagrams, from_client: bool = True) -> list[QuicFacts | None]:
    return [state.feed(d, from_client) for d in datagrams]


def chlo(tags: dict[bytes, bytes]) -> bytes:
    """A gQUIC CHLO handshake message: tag, entry count, then (tag, end offset) pairs, values."""
    entries = sorted(tags.items(), key=lambda kv: int.from_bytes(kv[0], "little"))
    head = bytearray(b"CHLO" + len(entries).to_bytes(2, "little") + b"\0\0")
    values = bytearray()
    for tag, value in entries:
        values += value
        head += tag + len(values).to_bytes(4, "little")
    return bytes(head + values)


def gquic_stream_frame(offset: int, data: bytes, big_endian: bool = True, stream_id: int = 1) -> bytes:
    """A gQUIC STREAM frame with a 1-byte stream id, 2-byte offset and 2-byte data length."""
    order = "big" if big_endian else "little"
    return (
        bytes([0x80 | 0x20 | (1 << 2)])
        + bytes([stream_id])
        + offset.to_bytes(2, order)
        + len(data).to_bytes(2, order)
        + data
    )


def q043_packet(cid: bytes, pn: int, frames: bytes, version: bytes | None = b"Q043") -> bytes:
    """A gQUIC public-header packet: flags, 8-byte CID, [version], 1-byte pn, 12-byte hash."""
    flags = 0x08 | (0x01 if version else 0)
    return bytes([flags]) + cid + (version or b"") + bytes([pn]) + bytes(12) + frames


def q046_packet(dcid: bytes, pn: int, frames: bytes) -> bytes:
    """A Q046 Initial: long header, CID-length nibbles (0x50: 8-byte DCID), 4-byte pn, hash."""
    return bytes([0xC3]) + b"Q046" + b"\x50" + dcid + pn.to_bytes(4, "big") + bytes(12) + frames


# --- test vectors ---------------------------------------------------------------------------


def test_rfc9001_client_initial_keys():
    key, iv, hp = initial_key_material(V1, RFC_DCID)
    assert key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_rfc9369_client_initial_keys():
    key, iv, hp = initial_key_material(V2, RFC_DCID)
    assert key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert iv.hex() == "91f73e2351d8fa91660e909f"
    assert hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"


def test_rfc9001_client_initial_decrypts_to_the_expected_crypto_frame():
    version, dcid, plaintext = unprotect(RFC9001_CLIENT_INITIAL)  # the test's own decryption agrees
    assert (version, dcid) == (V1, RFC_DCID)
    assert plaintext == RFC9001_CRYPTO_FRAME + bytes(917)

    state = QuicInitialState()
    facts = state.feed(RFC9001_CLIENT_INITIAL, from_client=True)
    assert facts is not None and state.done and state.facts is facts
    assert (facts.version, facts.version_name, facts.dcid) == (V1, "1", RFC_DCID)
    assert facts.sni == "example.com" and facts.alpn == ("alpn",)
    assert facts.client_hello is not None and facts.client_hello.cipher_suites == 2
    assert facts.client_hello.versions == (0x0304,)
    assert (facts.retry, facts.packets) == (False, 1)


def test_rfc9369_v2_client_initial_decrypts():
    facts = QuicInitialState().feed(RFC9369_CLIENT_INITIAL, from_client=True)
    assert facts is not None
    assert (facts.version, facts.version_name, facts.sni, facts.alpn) == (V2, "2", "example.com", ("alpn",))


def test_draft23_vector_uses_the_draft23_salt():
    facts = QuicInitialState().feed(DRAFT23_CLIENT_INITIAL, from_client=True)
    assert facts is not None
    assert (facts.version, facts.version_name, facts.sni) == (DRAFT_23, "draft-23", "server")


@pytest.mark.parametrize("version", [V2, DRAFT_29, 0xFF000021])
def test_a_v1_packet_relabelled_as_another_version_does_not_decrypt(version):
    """Salts and labels differ per version: the v1 vector under another version number fails."""
    first = RFC9001_CLIENT_INITIAL[0] | (0x10 if version == V2 else 0)  # v2 Initial type bits: 01
    relabelled = bytes([first]) + version.to_bytes(4, "big") + RFC9001_CLIENT_INITIAL[5:]
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(relabelled, from_client=True)
    assert e.value.reason in ("quic.initial.decrypt", "quic.initial.length")


def test_server_direction_initials_are_not_decrypted():
    state = QuicInitialState()
    assert state.feed(RFC9001_CLIENT_INITIAL, from_client=False) is None
    assert not state.done and state.packets == 0


def test_version_names():
    assert [version_name(v) for v in (V1, V2, DRAFT_29, DRAFT_27, 0xFACEB001, Q050, T051, Q043)] == [
        "1",
        "2",
        "draft-29",
        "draft-27",
        "mvfst-22",
        "Q050",
        "T051",
        "Q043",
    ]
    assert version_name(0) == "negotiation"
    assert version_name(0x1A2A3A4A) == "reserved-1a2a3a4a"
    assert version_name(0x12345678) == "0x12345678"


# --- aioquic-built Initials -----------------------------------------------------------------


@pytest.mark.parametrize("version", [V1, V2])
def test_aioquic_initial(version):
    _conn, dgs = aioquic_flight(version, server_name="Api.TikTokv.com.", alpn=("h3", "h3-29"))
    assert len(dgs) == 1 and looks_like_quic(dgs[0])
    state = QuicInitialState()
    facts = state.feed(dgs[0], from_client=True)
    assert facts is not None
    assert facts.version == version and facts.version_name == version_name(version)
    assert facts.sni == "api.tiktokv.com"  # normalized like every other inspector's hostnames
    assert facts.alpn == ("h3", "h3-29")
    assert facts.dcid == pull_quic_header(Buffer(data=dgs[0]), host_cid_length=8).destination_cid
    assert state.feed(dgs[0], from_client=True) is None  # done: no more work


def test_client_hello_over_several_datagrams_in_any_order():
    _conn, dgs = aioquic_flight(V1, alpn=big_alpn())
    assert len(dgs) >= 3, "the ClientHello must need several datagrams for this test"
    for order in (list(range(len(dgs))), list(reversed(range(len(dgs)))), [1, 0, *range(2, len(dgs))]):
        state = QuicInitialState()
        results = feed_all(state, [dgs[i] for i in order])
        assert results[:-1] == [None] * (len(dgs) - 1)
        facts = results[-1]
        assert facts is not None and facts.sni == "www.tiktok.com"
        assert facts.alpn == big_alpn() and facts.packets == len(dgs)


def test_duplicated_datagrams_do_not_complete_early():
    _conn, dgs = aioquic_flight(V1, alpn=big_alpn())
    state = QuicInitialState()
    assert feed_all(state, [dgs[0], dgs[0], dgs[1], dgs[1]]) == [None] * 4
    results = feed_all(state, [*dgs[2:-1], dgs[2], dgs[-1]])
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] is not None and results[-1].alpn == big_alpn()


def test_keys_are_derived_once_per_dcid(monkeypatch):
    built = []
    real = quic.initial_keys

    def counting(schedule, dcid):
        built.append((schedule, dcid))
        return real(schedule, dcid)

    monkeypatch.setattr(quic, "initial_keys", counting)
    _conn, dgs = aioquic_flight(V1, alpn=big_alpn())
    facts = feed_all(QuicInitialState(), dgs)[-1]
    assert facts is not None and facts.packets == len(dgs) >= 3
    assert len(built) == 1


# --- CRYPTO reassembly by offset, re-framed by hand --------------------------------------


def split_frames(hello: bytes, cuts: list[int], ftype: int = 0x06) -> list[bytes]:
    """CRYPTO frames covering ``hello`` cut at ``cuts``."""
    edges = [0, *cuts, len(hello)]
    return [crypto_frame(a, hello[a:b], ftype) for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("version", [V1, V2, DRAFT_29, DRAFT_27, 0xFACEB001, 0xFF000022])
def test_out_of_order_overlapping_frames_across_two_coalesced_initials(version):
    """Chrome's large ClientHello: CRYPTO frames out of order, overlapping and duplicated, with
    PADDING/PING/ACK between them, in two Initial packets coalesced with 0-RTT and Handshake
    packets and trailing padding in one datagram."""
    hello = aioquic_client_hello(alpn=("h3",))
    a, b, c = split_frames(hello, [100, 260])
    overlap = crypto_frame(80, hello[80:300])
    dcid, scid = bytes.fromhex("0011223344556677"), bytes.fromhex("a1a2a3a4")
    ack = b"\x03" + varint(5) + varint(0) + varint(1) + varint(0) + varint(1) + varint(2)
    ack += varint(7) + varint(1) + varint(3)  # ACK_ECN: one extra range and three ECN counts
    first = protect(version, dcid, c + b"\x00\x00\x01" + ack + overlap + b"\x00" * 30, pn=0, scid=scid)
    second = protect(version, dcid, b"\x01" + a + a + b"\x00" * 10 + b, pn=1, scid=scid)
    zero_rtt = protect(version, dcid, b"\x01" * 40, pn=2, scid=scid, packet_type=1)
    handshake = protect(version, dcid, b"\x01" * 40, pn=3, scid=scid, packet_type=2)
    datagram = first + zero_rtt + second + handshake + bytes(200)
    facts = QuicInitialState().feed(datagram, from_client=True)
    assert facts is not None
    assert facts.sni == "www.tiktok.com" and facts.version == version and facts.packets == 2
    assert facts.dcid == dcid


def test_crypto_frames_across_datagrams_with_a_gap_wait_for_the_gap():
    hello = aioquic_client_hello()
    frames = split_frames(hello, [50, 150, 200])
    dcid = b"\x42" * 8
    state = QuicInitialState()
    assert state.feed(protect(V1, dcid, frames[3] + frames[1], pn=0), True) is None
    assert state.feed(protect(V1, dcid, frames[0], pn=1), True) is None  # 150..200 still missing
    facts = state.feed(protect(V1, dcid, b"\x01" + frames[2], pn=2), True)
    assert facts is not None and facts.sni == "www.tiktok.com" and facts.packets == 3


def test_later_initials_to_the_servers_cid_still_use_the_original_keys():
    """After the server's first Initial the client addresses it by the server's SCID, but its
    Initial keys stay those of the original DCID (RFC 9001 section 5.2)."""
    hello = aioquic_client_hello()
    first, second = split_frames(hello, [120])
    original, server_cid = b"\x01" * 8, b"\x02" * 8
    state = QuicInitialState()
    assert state.feed(protect(V1, original, first, pn=0), True) is None
    assert state.feed(b"\x40" + server_cid + bytes(30), True) is None  # a 1-RTT packet: ignored
    facts = state.feed(protect(V1, server_cid, second, pn=1, key_dcid=original), True)
    assert facts is not None and facts.dcid == server_cid and facts.packets == 2


def test_packet_numbers_are_decoded_against_the_largest_seen():
    """A 1-byte packet number after packet 0x1fe means 0x200, not 0x00 (RFC 9000 A.3): the nonce
    depends on it, so decoding it wrong would fail decryption."""
    hello = aioquic_client_hello()
    first, second = split_frames(hello, [100])
    dcid = b"\x33" * 8
    state = QuicInitialState()
    assert state.feed(protect(V1, dcid, first, pn=0x1FE, pn_len=2), True) is None
    second_packet = bytearray(protect(V1, dcid, second, pn=0x200, pn_len=1))
    facts = state.feed(bytes(second_packet), True)
    assert facts is not None and facts.packets == 2


def test_gquic_t051_tls_in_gquic_crypto_frames():
    """T05x: IETF long header and Initial encryption with their own salt, gQUIC frames; the
    handshake is a TLS ClientHello in CRYPTO frames of type 0x08."""
    hello = aioquic_client_hello(server_name="t051.example")
    a, b = split_frames(hello, [90], ftype=0x08)
    gq_ack = bytes([0x40, 0x05, 0x00, 0x00, 0x01, 0x00])  # 1-byte largest, delay, block, 0 stamps
    datagram = protect(T051, b"\x51" * 8, b"\x07" + b + gq_ack + a + b"\x00" + bytes(40))
    facts = QuicInitialState().feed(datagram, from_client=True)
    assert facts is not None
    assert (facts.version, facts.version_name, facts.sni) == (T051, "T051", "t051.example")


def test_gquic_q050_encrypted_chlo():
    message = chlo(
        {
            b"SNI\x00": b"Q050.Example.COM",
            b"UAID": b"Chrome/80.0",
            b"VER\x00": b"Q050",
            b"PAD\x00": b"-" * 300,
        }
    )
    a, b = split_frames(message, [40], ftype=0x08)
    dcid = b"\x50" * 8
    state = QuicInitialState()
    assert state.feed(protect(Q050, dcid, b + b"\x00" * 100, pn=1), True) is None
    facts = state.feed(protect(Q050, dcid, a + b"\x00" * 100, pn=2), True)
    assert facts is not None and facts.client_hello is None
    assert (facts.version_name, facts.sni, facts.user_agent, facts.alpn) == (
        "Q050",
        "q050.example.com",
        "Chrome/80.0",
        (),
    )


def test_gquic_q043_clear_chlo_on_stream_1_over_two_packets():
    message = chlo({b"SNI\x00": b"www.wechat.com", b"UAID": b"WeChat/8", b"PAD\x00": b"-" * 900})
    cid = bytes(range(8))
    first = q043_packet(cid, 1, gquic_stream_frame(0, message[:700]))
    second = q043_packet(cid, 2, b"\x07" + gquic_stream_frame(700, message[700:]) + bytes(20), version=None)
    assert looks_like_quic(first) and not looks_like_quic(second)
    state = QuicInitialState()
    assert state.feed(first, True) is None
    facts = state.feed(second, True)
    assert facts is not None
    assert (facts.version, facts.sni, facts.user_agent) == (Q043, "www.wechat.com", "WeChat/8")
    assert facts.dcid == cid


def test_gquic_q046_clear_chlo():
    message = chlo({b"SNI\x00": b"q46.example"})
    datagram = q046_packet(b"\x46" * 8, 1, gquic_stream_frame(0, message) + bytes(100))
    assert looks_like_quic(datagram)
    facts = QuicInitialState().feed(datagram, True)
    assert facts is not None and (facts.version_name, facts.sni) == ("Q046", "q46.example")


def test_gquic_chlo_without_sni_and_server_version_negotiation():
    state = QuicInitialState()
    vn = bytes([0x09]) + bytes(8) + b"Q046Q043Q039"
    assert state.feed(vn, from_client=False) is None
    assert state.versions_offered == (Q046, Q043, int.from_bytes(b"Q039", "big"))
    facts = state.feed(q043_packet(b"\x01" * 8, 1, gquic_stream_frame(0, chlo({b"VER\x00": b"Q043"}))), True)
    assert facts is not None and facts.sni is None and facts.version_name == "Q043"


def test_gquic_handshake_that_is_not_a_chlo_is_an_error():
    packet = q043_packet(b"\x01" * 8, 1, gquic_stream_frame(0, b"REJ\x00\x00\x00\x00\x00"))
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(packet, True)
    assert e.value.reason == "quic.chlo.tag"


# --- Retry and Version Negotiation ----------------------------------------------------------


@pytest.mark.parametrize("version", [V1, V2])
def test_initial_after_retry_decrypts_with_the_new_dcid(version):
    conn, first = aioquic_flight(version, server_name="retry.example")
    header = pull_quic_header(Buffer(data=first[0]), host_cid_length=8)
    new_cid = bytes(range(1, 9))
    retry = encode_quic_retry(
        version=version,
        source_cid=new_cid,
        destination_cid=header.source_cid,
        original_destination_cid=header.destination_cid,
        retry_token=b"token" * 4,
    )
    conn.receive_datagram(retry, ("192.0.2.1", 443), now=0.1)
    second = [d for d, _ in conn.datagrams_to_send(now=0.1)]
    assert pull_quic_header(Buffer(data=second[0]), host_cid_length=8).destination_cid == new_cid

    state = QuicInitialState()
    damaged = bytearray(first[0])
    damaged[300] ^= 0x01
    with pytest.raises(MalformedError) as e:
        state.feed(bytes(damaged), from_client=True)  # a bad datagram ...
    assert e.value.reason == "quic.initial.decrypt"
    assert state.feed(retry, from_client=False) is None and state.retry_seen
    facts = state.feed(second[0], from_client=True)  # ... does not poison the state
    assert facts is not None
    assert facts.retry and facts.dcid == new_cid and facts.sni == "retry.example"
    assert len(state.errors) == 1


def test_retry_restarts_crypto_reassembly():
    """Half a ClientHello before a Retry, then the whole one again under the new keys."""
    conn, first = aioquic_flight(V1, alpn=big_alpn())
    header = pull_quic_header(Buffer(data=first[0]), host_cid_length=8)
    new_cid = b"\xee" * 8
    retry = encode_quic_retry(
        version=V1,
        source_cid=new_cid,
        destination_cid=header.source_cid,
        original_destination_cid=header.destination_cid,
        retry_token=b"t",
    )
    conn.receive_datagram(retry, ("192.0.2.1", 443), now=0.1)
    second = [d for d, _ in conn.datagrams_to_send(now=0.1)]
    state = QuicInitialState()
    assert state.feed(first[0], True) is None
    assert state.feed(retry, False) is None
    results = feed_all(state, second)
    facts = results[-1]
    assert facts is not None and facts.retry and facts.dcid == new_cid and facts.alpn == big_alpn()


def test_data_from_before_a_retry_is_not_mixed_into_the_new_client_hello():
    old = aioquic_client_hello(server_name="before.example")
    new = aioquic_client_hello(server_name="after1.example")  # same length as the old one
    state = QuicInitialState()
    assert state.feed(protect(V1, b"\x01" * 8, crypto_frame(0, old[:150])), True) is None
    assert state.feed(RFC9001_RETRY, False) is None  # new SCID f067a5502a4262b5
    new_cid = bytes.fromhex("f067a5502a4262b5")
    assert state.feed(protect(V1, new_cid, crypto_frame(150, new[150:]), pn=1), True) is None
    facts = state.feed(protect(V1, new_cid, crypto_frame(0, new[:150]), pn=2), True)
    assert facts is not None and facts.sni == "after1.example" and facts.retry


def test_rfc9001_retry_vector_is_recognised():
    state = QuicInitialState()
    assert state.feed(RFC9001_RETRY, from_client=False) is None
    assert state.retry_seen and not state.errors


def test_version_negotiation_is_recorded_and_not_an_error():
    vn = encode_quic_version_negotiation(
        source_cid=b"\x01" * 8, destination_cid=b"\x02" * 8, supported_versions=[V1, V2]
    )
    assert looks_like_quic(vn)
    state = QuicInitialState()
    assert state.feed(vn, from_client=False) is None
    assert state.versions_offered == (V1, V2) and not state.errors and not state.done
    # the client then starts over with a version the server offered
    facts = state.feed(aioquic_flight(V2)[1][0], from_client=True)
    assert facts is not None and facts.version == V2


def test_reserved_version_initial_is_ignored():
    grease = bytes([0xC0]) + (0x1A2A3A4A).to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x00" + bytes(1180)
    assert looks_like_quic(grease)
    assert QuicInitialState().feed(grease, True) is None


# --- classification -------------------------------------------------------------------------


def test_looks_like_quic():
    assert looks_like_quic(RFC9001_CLIENT_INITIAL)
    assert looks_like_quic(RFC9369_CLIENT_INITIAL)
    assert looks_like_quic(DRAFT23_CLIENT_INITIAL)
    assert looks_like_quic(q043_packet(bytes(8), 1, b""))
    assert not looks_like_quic(b"")
    assert not looks_like_quic(RFC9001_CLIENT_INITIAL[:6])
    assert not looks_like_quic(b"\x40" + bytes(40))  # short header: nothing to learn
    assert not looks_like_quic(b"\xc0\x12\x34\x56\x78" + bytes(40))  # unknown version
    assert not looks_like_quic(b"\x80" + RFC9001_CLIENT_INITIAL[1:])  # fixed bit clear
    assert not looks_like_quic(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")  # a DNS query


# --- errors ---------------------------------------------------------------------------------


def test_unknown_version_is_malformed():
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(b"\xc0\x12\x34\x56\x78\x08" + bytes(8) + b"\x00" * 40, True)
    assert e.value.reason == "quic.version"


def test_public_header_gquic_version_in_a_long_header_is_malformed():
    bogus = b"\xc0Q043\x08" + bytes(8) + b"\x00\x00\x40\x20" + bytes(40)
    assert not looks_like_quic(bogus)
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(bogus, True)
    assert e.value.reason == "quic.version"


def test_stream_reassembly_matches_a_model():
    """Random overlapping, duplicated, out-of-order pieces: the merged ranges, the contiguous
    prefix and its bytes agree with a plain set-of-offsets model."""
    rng = random.Random(3)
    data = bytes(rng.randrange(256) for _ in range(400))
    for _ in range(2000):
        stream = quic._Stream()
        model: set[int] = set()
        for _ in range(rng.randrange(1, 25)):
            a = rng.randrange(400)
            b = min(400, a + rng.randrange(0, 50))
            stream.add(a, data[a:b])
            model.update(range(a, b))
        covered = {i for s, e in zip(stream.starts, stream.ends, strict=True) for i in range(s, e)}
        assert covered == model
        assert all(e < s for e, s in zip(stream.ends, stream.starts[1:], strict=False))  # merged
        prefix = 0
        while prefix in model:
            prefix += 1
        assert stream.contiguous == prefix and bytes(stream.buf[:prefix]) == data[:prefix]


def _sequential(chunks: list[tuple[int, bytes]]) -> quic._Stream:
    stream = quic._Stream()
    for offset, data in chunks:
        stream.add(offset, data)
    return stream


def test_stream_add_all_agrees_with_adding_one_by_one():
    """A packet's chunks added at once (tiling, gapped, overlapping with different bytes, empty)
    leave the same bytes, ranges and contiguous prefix as adding them in the order they came."""
    rng = random.Random(10)
    for _ in range(3000):
        before = [(o, bytes([rng.randrange(256)]) * (rng.randrange(1, 30))) for o in (0, 300)]
        chunks: list[tuple[int, bytes]] = []
        if rng.random() < 0.5:  # a tiling of one range, shuffled (Chrome's CRYPTO frames)
            cuts = sorted(rng.sample(range(1, 200), rng.randrange(0, 8)))
            start = rng.randrange(0, 50)
            edges = [0, *cuts, 200]
            chunks = [(start + a, rng.randbytes(1) * (b - a)) for a, b in itertools.pairwise(edges)]
            rng.shuffle(chunks)
        for _ in range(rng.randrange(0, 4)):  # gaps, overlaps with other bytes, empty chunks
            a = rng.randrange(260)
            chunks.insert(rng.randrange(len(chunks) + 1), (a, rng.randbytes(1) * rng.randrange(0, 40)))
        one_by_one = _sequential(before + chunks)
        at_once = _sequential(before)
        at_once.add_all(chunks)
        assert bytes(at_once.buf) == bytes(one_by_one.buf)
        assert (at_once.starts, at_once.ends) == (one_by_one.starts, one_by_one.ends)
        assert at_once.contiguous == one_by_one.contiguous


def test_stream_add_all_joins_a_tiling_into_one_add(monkeypatch):
    """Chrome's ClientHello comes in several CRYPTO frames per packet, out of order: the range
    lists are updated once for them, not once per frame."""
    parts = [(40, b"c" * 30), (0, b"a" * 10), (70, b"d" * 5), (10, b"b" * 30)]
    calls: list[tuple[int, int]] = []
    add = quic._Stream.add

    def counted(self: quic._Stream, offset: int, data: bytes) -> None:
        calls.append((offset, len(data)))
        add(self, offset, data)

    monkeypatch.setattr(quic._Stream, "add", counted)
    stream = quic._Stream()
    stream.add_all(parts)
    assert calls == [(0, 75)]
    assert bytes(stream.buf) == b"a" * 10 + b"b" * 30 + b"c" * 30 + b"d" * 5 and stream.contiguous == 75
    calls.clear()
    stream = quic._Stream()
    stream.add_all([(0, b"a" * 10), (20, b"c" * 5)])  # a gap: each chunk as it came
    assert calls == [(0, 10), (20, 5)] and stream.contiguous == 10


def test_crypto_frames_over_the_limit_in_one_packet_are_malformed():
    frames = crypto_frame(0, b"x" * 20) + crypto_frame(MAX_CRYPTO_BYTES - 5, b"y" * 10)
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(protect(V1, b"\x01" * 8, frames), True)
    assert e.value.reason == "quic.crypto.offset"


def test_forbidden_frame_in_initial_is_malformed():
    stream_frame = b"\x08" + varint(0) + b"hello"
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(protect(V1, b"\x01" * 8, b"\x01" + stream_frame + bytes(40)), True)
    assert e.value.reason == "quic.frame.type"


def test_truncated_crypto_frame_is_malformed():
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(protect(V1, b"\x01" * 8, b"\x06\x00\x44\x00abc"), True)
    assert e.value.reason == "quic.frame.crypto"


def test_crypto_beyond_64k_is_malformed():
    frame = crypto_frame(MAX_CRYPTO_BYTES - 10, b"x" * 20)
    state = QuicInitialState()
    with pytest.raises(MalformedError) as e:
        state.feed(protect(V1, b"\x01" * 8, frame), True)
    assert e.value.reason == "quic.crypto.offset"
    assert not state.done  # a later good Initial still works
    assert state.feed(RFC9001_CLIENT_INITIAL, True) is not None


def test_handshake_that_is_not_a_client_hello_ends_the_flow():
    state = QuicInitialState()
    with pytest.raises(MalformedError) as e:
        state.feed(protect(V1, b"\x01" * 8, crypto_frame(0, b"\x02\x00\x00\x04abcd")), True)
    assert e.value.reason == "quic.crypto.handshake_type"
    assert state.done and state.feed(RFC9001_CLIENT_INITIAL, True) is None


def test_client_hello_longer_than_the_cap_ends_the_flow():
    state = QuicInitialState()
    with pytest.raises(MalformedError) as e:
        state.feed(protect(V1, b"\x01" * 8, crypto_frame(0, b"\x01\x01\x00\x00")), True)
    assert e.value.reason == "quic.crypto.handshake_length" and state.done


def test_bad_packet_inside_a_datagram_does_not_hide_a_good_one():
    hello = aioquic_client_hello()
    bad = bytearray(protect(V1, b"\x01" * 8, b"\x01" * 60, pn=0))
    bad[-1] ^= 0xFF  # broken tag
    good = protect(V1, b"\x01" * 8, crypto_frame(0, hello), pn=1)
    facts = QuicInitialState().feed(bytes(bad) + good, True)
    assert facts is not None and facts.sni == "www.tiktok.com"


def test_length_overrunning_the_datagram_is_malformed():
    with pytest.raises(MalformedError) as e:
        QuicInitialState().feed(RFC9001_CLIENT_INITIAL[:-1], True)
    assert e.value.reason == "quic.length"


def test_datagram_limit():
    state = QuicInitialState()
    hello = aioquic_client_hello()
    for i in range(MAX_DATAGRAMS):
        assert state.feed(protect(V1, b"\x01" * 8, crypto_frame(0, hello[:10]), pn=i), True) is None
    with pytest.raises(MalformedError) as e:
        state.feed(protect(V1, b"\x01" * 8, crypto_frame(0, hello), pn=99), True)
    assert e.value.reason == "quic.datagrams" and state.done


def _valid_datagrams() -> list[tuple[bytes, bool]]:
    _conn, big = aioquic_flight(V1, alpn=big_alpn())
    hello = aioquic_client_hello()
    message = chlo({b"SNI\x00": b"fuzz.example", b"UAID": b"x"})
    return [
        (RFC9001_CLIENT_INITIAL, True),
        (RFC9369_CLIENT_INITIAL, True),
        (big[0], True),
        (
            protect(
                DRAFT_29, b"\x09" * 8, split_frames(hello, [64])[1] + b"\x01" + crypto_frame(0, hello[:64])
            ),
            True,
        ),
        (protect(Q050, b"\x05" * 8, crypto_frame(0, message, 0x08) + bytes(30)), True),
        (q043_packet(b"\x01" * 8, 1, gquic_stream_frame(0, message) + bytes(30)), True),
        (q046_packet(b"\x02" * 8, 1, gquic_stream_frame(0, message)), True),
        (RFC9001_RETRY, False),
        (
            encode_quic_version_negotiation(
                source_cid=b"\x01" * 8, destination_cid=b"\x02" * 8, supported_versions=[V1, V2]
            ),
            False,
        ),
    ]


def _fuzz_one(data: bytes, from_client: bool, state: QuicInitialState | None = None) -> None:
    state = state or QuicInitialState()
    try:
        state.feed(data, from_client)
    except MalformedError as e:
        # the module's safety net for missed bounds must never be what catches an input
        assert e.field != "datagram", f"unguarded parse of {data[:40].hex()}: {e}"


def test_fuzz_random_bytes_bit_flips_and_truncations():
    rng = random.Random(9001)
    valid = _valid_datagrams()
    for _ in range(1500):
        n = rng.choice((0, 1, 5, 6, 7, 20, 60, 1200))
        first = rng.choice((0x00, 0x09, 0x40, 0x80, 0xC0, 0xC3, 0xF0, rng.randrange(256)))
        body = bytes(rng.randrange(256) for _ in range(n))
        if n and rng.random() < 0.5:  # a known version, so the parser gets past the header
            version = rng.choice((V1, V2, DRAFT_29, Q050, Q046, 0))
            body = bytes([first]) + version.to_bytes(4, "big") + body[5:]
        _fuzz_one(body, rng.random() < 0.7)
    for data, from_client in valid:
        for _ in range(150):
            mutated = bytearray(data)
            for _ in range(rng.choice((1, 1, 2, 8))):
                i = rng.randrange(len(mutated))
                mutated[i] ^= 1 << rng.randrange(8)
            _fuzz_one(bytes(mutated), from_client)
            _fuzz_one(bytes(mutated), not from_client)
        for cut in range(0, len(data), max(1, len(data) // 97)):
            _fuzz_one(data[:cut], from_client)


def test_fuzz_plaintext_frames():
    """Flipped bytes after decryption: exercises the frame and handshake parsers themselves."""
    rng = random.Random(29)
    hello = aioquic_client_hello()
    message = chlo({b"SNI\x00": b"fuzz.example", b"UAID": b"ua"})
    plains = [
        (V1, b"\x01" + crypto_frame(0, hello) + b"\x02\x05\x00\x00\x00" + bytes(20)),
        (T051, crypto_frame(0, hello, 0x08) + bytes([0x60, 0, 0, 0, 1, 0, 2, 0]) + bytes(20)),
        (Q050, b"\x07" + crypto_frame(0, message, 0x08) + b"\x06\x01" + bytes(20)),
    ]
    for version, plain in plains:
        for _ in range(300):
            mutated = bytearray(plain)
            for _ in range(rng.choice((1, 2, 4))):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            _fuzz_one(protect(version, b"\x07" * 8, bytes(mutated)), True)
        clear = gquic_stream_frame(0, message) + b"\x40\x01\x00\x00\x01\x00" + bytes(10)
        for _ in range(300):
            mutated = bytearray(clear)
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            _fuzz_one(q043_packet(b"\x01" * 8, 1, bytes(mutated)), True)
            _fuzz_one(q046_packet(b"\x01" * 8, 1, bytes(mutated)), True)


def test_state_survives_a_stream_of_garbage_then_completes():
    rng = random.Random(7)
    state = QuicInitialState()
    for _ in range(MAX_DATAGRAMS - 1):
        junk = bytes([0xC0]) + V1.to_bytes(4, "big") + bytes(rng.randrange(256) for _ in range(100))
        _fuzz_one(junk, True, state)
    assert not state.done
    assert state.feed(RFC9001_CLIENT_INITIAL, True) is not None


# --- real captures, checked against tshark ---------------------------------------------------


def capture_flows(path) -> OrderedDict:
    """UDP payloads per flow in capture order, each marked from_client (= sender of the first)."""
    from classifier.capture import open_capture
    from classifier.decode import decode

    flows: OrderedDict = OrderedDict()
    with open_capture(str(path)) as reader:
        for _ts, linktype, frame, _iface in reader:
            try:
                packet = decode(linktype, frame)
            except MalformedError:
                continue
            if packet is None or packet[0] != 17 or packet[2] < 0:
                continue
            src, sport, dst, dport, payload = packet[1], packet[2], packet[3], packet[4], packet[7]
            key = ((src, sport), (dst, dport))
            if key not in flows and key[::-1] in flows:
                key = key[::-1]
            flows.setdefault(key, []).append((bytes(payload), (src, sport) == key[0]))
    return flows


def extract_snis(path) -> dict[int, str | None]:
    """client port -> SNI for every flow whose ClientHello/CHLO this module completes."""
    out = {}
    for (client, _server), datagrams in capture_flows(path).items():
        state = QuicInitialState()
        for payload, from_client in datagrams:
            if state.done:
                break
            try:
                facts = state.feed(payload, from_client)
            except MalformedError:
                continue
            if facts is not None:
                out[client[1]] = facts.sni
    return out


# tshark -r FILE -Y 'gquic.tag.sni or tls.handshake.extensions_server_name' -T fields
#   -e udp.srcport -e udp.dstport -e tls.handshake.extensions_server_name -e gquic.tag.sni
# (first SNI per flow; tshark 4.0)
TSHARK_SNIS = {
    "quic.pcap": """
        34438:www.youtube.com 35236:www.youtube.com 40030:fonts.gstatic.com 45669:www.google.com
        48445:i.ytimg.com 53817:yt3.ggpht.com 55934:s.ytimg.com 57833:mail.google.com
    """,
    "youtube_quic.pcap": """
        53859:googleads.g.doubleclick.net 54997:pagead2.googlesyndication.com 56074:yt3.ggpht.com
    """,
    "quic-mvfst-22.pcap": """
        35601:graph.facebook.com
    """,
    "quic_frags_ch_out_of_order_same_packet_craziness.pcapng": """
        35124:s-img.adskeeper.co.uk 38331:litepages.googlezip.net
        43427:optimizationguide-pa.googleapis.com 44252:accounts.google.com
        45652:content-autofill.googleapis.com 49153:dns.google 49217:safebrowsing.googleapis.com
        49324:pagead2.googlesyndication.com 49521:clientservices.googleapis.com 49689:www.google.com
        49860:b1.nel.goog 49867:content-autofill.googleapis.com 49880:update.googleapis.com
        49926:r5---sn-vh5ouxa-hju6.googlevideo.com 50023:www.youtube.com
        50073:r3---sn-vh5ouxa-hjud.googlevideo.com 50224:www.googleapis.com 50423:www.google.com
        50482:yt3.ggpht.com 50540:i.ytimg.com 50552:beacons.gvt2.com 50588:update.googleapis.com
        51053:content-autofill.googleapis.com 51075:pagead2.googlesyndication.com
        51248:beacons.gcp.gvt2.com 51296:beacons.gcp.gvt2.com 51456:clientservices.googleapis.com
        51619:clientservices.googleapis.com 51856:media.fmct2-1.fna.whatsapp.net
        52273:r3---sn-vh5ouxa-hju6.googlevideo.com 52387:pagead2.googlesyndication.com 52396:dns.google
        52512:safebrowsing.googleapis.com 52942:clients2.google.com 53127:b1.nel.goog
        53260:clientservices.googleapis.com 53404:update.googleapis.com 53431:fonts.gstatic.com
        54016:dns.google 54120:dns.google 54449:beacons3.gvt2.com 54692:www.freearabianporn.com
        55066:fonts.gstatic.com 55273:clients4.google.com 55376:www.google.com
        55479:clientservices.googleapis.com 55561:googleads.g.doubleclick.net
        55572:googleads.g.doubleclick.net 55637:r3---sn-hju7enel.googlevideo.com
        55844:android.clients.google.com 56384:pagead2.googlesyndication.com
        56425:r1---sn-vh5ouxa-hjuk.googlevideo.com 56488:www.youtube.com 56528:update.googleapis.com
        56683:b1.nel.goog 56844:b1.nel.goog 57066:clientservices.googleapis.com
        57319:android.clients.google.com 57398:www.googleadservices.com
        57565:r2---sn-vh5ouxa-hjuk.googlevideo.com 57735:ade.googlesyndication.com
        57767:r11---sn-vh5ouxa-hjuk.googlevideo.com 58123:accounts.google.com
        58337:clientservices.googleapis.com 58351:www.gstatic.com 58414:dns.google
        58429:static.doubleclick.net 58703:android.clients.google.com 58832:googleads.g.doubleclick.net
        58956:beacons.gcp.gvt2.com 59048:accounts.google.com 59206:ogs.google.com 59327:dns.google
        59622:dns.google 59680:googleads.g.doubleclick.net 59785:beacons.gcp.gvt2.com
        59827:www.googleadservices.com 59965:r1---sn-vh5ouxa-hju6.googlevideo.com
        60342:suggestqueries-clients6.youtube.com 60551:beacons.gvt2.com
        60809:suggestqueries-clients6.youtube.com 60896:www.google.com 60919:adservice.google.com
        60934:beacons.gcp.gvt2.com 60936:suggestqueries-clients6.youtube.com
        60949:content-autofill.googleapis.com 61089:clientservices.googleapis.com
        61202:safebrowsing.googleapis.com 61209:www.googleadservices.com
        61286:safebrowsing.googleapis.com 61341:r9---sn-vh5ouxa-hjuk.googlevideo.com
        61484:ogs.google.com 61647:sb-ssl.google.com 61886:adservice.google.com 62047:beacons4.gvt2.com
        62114:safebrowsing.googleapis.com 62652:static.doubleclick.net 62719:lh4.googleusercontent.com
        62818:clientservices.googleapis.com 63136:suggestqueries-clients6.youtube.com
        63163:update.googleapis.com 63507:clients2.googleusercontent.com
        63736:r4---sn-vh5ouxa-hjud.googlevideo.com 63925:beacons2.gvt2.com 64134:www.google.com
        64497:beacons.gvt2.com 64693:b1.nel.goog 64700:r9---sn-vh5ouxa-hjuk.googlevideo.com
        64964:accounts.google.com 64976:r1---sn-hju7enel.googlevideo.com 65186:www.youtube.com
        65360:googleads.g.doubleclick.net 65391:fonts.gstatic.com
    """,
}

# Flows with a complete CHLO/ClientHello but no SNI (tshark's filter above cannot list them).
NO_SNI_FLOWS = {"quic.pcap": {40134}}


def parse_expected(text: str) -> dict[int, str]:
    return {int(port): sni for port, sni in (item.split(":", 1) for item in text.split())}


@pytest.mark.real
@pytest.mark.parametrize("name", sorted(TSHARK_SNIS))
def test_real_capture_snis_match_tshark(name):
    path = need_shared(REAL / name)
    found = extract_snis(path)
    expected = parse_expected(TSHARK_SNIS[name])
    assert {port: sni for port, sni in found.items() if sni is not None} == expected
    assert {port for port, sni in found.items() if sni is None} == NO_SNI_FLOWS.get(name, set())


@pytest.mark.real
@pytest.mark.parametrize("name", sorted(TSHARK_SNIS))
def test_real_capture_snis_match_live_tshark(name):
    """The same comparison against tshark run now, where tshark is installed."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    path = need_shared(REAL / name)
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(path),
            "-Y",
            "gquic.tag.sni or tls.handshake.extensions_server_name",
            "-T",
            "fields",
            "-e",
            "udp.srcport",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "gquic.tag.sni",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    expected: dict[int, str] = {}
    for line in out.splitlines():
        port, tls_sni, gquic_sni = line.split("\t")
        expected.setdefault(int(port), (tls_sni or gquic_sni).split(",")[0])
    found = extract_snis(path)
    assert {port: sni for port, sni in found.items() if sni is not None} == expected


@pytest.mark.real
def test_real_capture_versions():
    """The versions seen: draft-29 (Chrome), mvfst draft-22 (Facebook), gQUIC Q024-Q035."""
    seen = set()
    for name in TSHARK_SNIS:
        for datagrams in capture_flows(need_shared(REAL / name)).values():
            state = QuicInitialState()
            for payload, from_client in datagrams:
                try:
                    facts = state.feed(payload, from_client)
                except MalformedError:
                    continue
                if facts is not None:
                    seen.add(facts.version_name)
                    break
    assert seen == {"draft-29", "mvfst-22", "Q024", "Q025", "Q030", "Q033", "Q035"}


@pytest.mark.parametrize("key_len", [0, 8, 20, 32, 64, 65, 100])
def test_pre_keyed_hmac_equals_the_standard_library(key_len):
    """The pre-keyed HMAC used for Initial keys is HMAC-SHA256 for any key length (RFC 2104:
    keys above the block size are hashed first)."""
    import hashlib
    import hmac

    key = bytes(range(key_len))
    for message in (b"", b"\x00" * 20, bytes(range(200))):
        assert quic._PreKeyed(key).digest(message) == hmac.digest(key, message, hashlib.sha256)


# --- the once-per-flow fast paths agree with the general ones ---------------------------------

# RFC 9001 A.2: the client's header-protection key, the sample of its Initial and the mask.
RFC9001_HP = bytes.fromhex("9f50449e04a0e810283a1e9933adedd2")
RFC9001_SAMPLE = bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b")
RFC9001_MASK = bytes.fromhex("437b9aec36")


def test_header_protection_mask_is_the_rfc9001_one():
    """The ECB context made through the binding masks as RFC 9001 A.2 says."""
    _aesgcm, header_protection = quic._CIPHERS or quic._ciphers()
    assert header_protection.__name__ == "direct_encryptor"  # the pinned cryptography has it
    assert header_protection(RFC9001_HP).update(RFC9001_SAMPLE)[:5] == RFC9001_MASK


def test_header_protection_falls_back_to_cipher_without_the_binding(monkeypatch):
    """Another cryptography release (no such binding, one that takes other arguments, or a
    Cipher that no longer goes through it and encrypts otherwise): Cipher, as before."""
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl

    ecb = modes.ECB()
    built = []
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.bindings._rust", None)
    built.append(quic._header_protection_constructor(algorithms.AES, ecb))
    monkeypatch.undo()

    def other_arguments(*args: object) -> None:
        raise TypeError("create_encryption_ctx() takes 3 positional arguments")

    monkeypatch.setattr(rust_openssl.ciphers, "create_encryption_ctx", other_arguments)
    built.append(quic._header_protection_constructor(algorithms.AES, ecb))
    monkeypatch.undo()

    class Other:
        def update(self, data: bytes) -> bytes:
            return bytes(len(data))

    monkeypatch.setattr(Cipher, "encryptor", lambda self: Other())
    built.append(quic._header_protection_constructor(algorithms.AES, ecb))
    monkeypatch.undo()
    for constructor in built:
        assert constructor.__name__ == "cipher_encryptor"
        assert constructor(RFC9001_HP).update(RFC9001_SAMPLE)[:5] == RFC9001_MASK


def test_from_zero_holds_what_a_stream_would():
    """Chunks that tile one range from offset 0, in any order, are read where they are joined:
    exactly the bytes a stream would hold. Anything else (a gap, an overlap, a duplicate, a start
    past 0) is left to the stream, which keeps the later of two differing bytes."""
    rng = random.Random(12)
    data = rng.randbytes(300)
    joined = 0
    for _ in range(3000):
        cuts = sorted(rng.sample(range(1, 300), rng.randrange(0, 9)))
        edges = [0, *cuts, rng.choice((300, rng.randrange(1, 300)))]
        chunks = [(a, data[a:b]) for a, b in itertools.pairwise(edges) if a <= b]
        if rng.random() < 0.4:  # a gap, an overlap or duplicate, or a range not from 0
            a = rng.randrange(300)
            chunks.append((a, rng.randbytes(rng.randrange(0, 30))))
        if rng.random() < 0.2:
            chunks = [(offset + 5, piece) for offset, piece in chunks]
        rng.shuffle(chunks)
        stream = quic._Stream()
        stream.add_all(chunks)
        got = quic._from_zero(chunks)  # None (left to the stream) is always a right answer
        if got is not None:
            joined += 1
            assert got == bytes(stream.buf) and len(got) == stream.contiguous
    assert joined > 1000  # the fast path was taken, not only refused
    assert quic._from_zero([]) == b""
    assert quic._from_zero([(0, b"ab"), (2, b"cd"), (1, b"x")]) is None  # overlap: the stream's
    assert quic._from_zero([(0, b"ab"), (0, b"ab")]) is None  # duplicate
    assert quic._from_zero([(2, b"cd"), (0, b"ab")]) == b"abcd"


def test_client_hello_from_zero_but_unfinished_waits_for_the_rest():
    """A first packet whose frames tile the ClientHello's start (shuffled) but not all of it:
    kept, and completed by the next; a later packet's different bytes for the same offsets win,
    as they do in the stream."""
    hello = aioquic_client_hello()
    frames = split_frames(hello, [30, 90, 160])
    dcid = b"\x24" * 8
    state = QuicInitialState()
    assert state.feed(protect(V1, dcid, frames[2] + frames[0] + frames[1], pn=0), True) is None
    facts = state.feed(protect(V1, dcid, frames[3], pn=1), True)
    assert facts is not None and facts.sni == "www.tiktok.com" and facts.packets == 2
    # A first packet with only the first 30 bytes (less than the handshake header tells).
    state = QuicInitialState()
    assert state.feed(protect(V1, dcid, frames[0], pn=0), True) is None
    assert state.feed(protect(V1, dcid, frames[2] + frames[1], pn=1), True) is None
    facts = state.feed(protect(V1, dcid, frames[3], pn=2), True)
    assert facts is not None and facts.sni == "www.tiktok.com" and facts.packets == 3
    # Same start, then bytes 0..4 sent again as something that is no ClientHello: that wins.
    state = QuicInitialState()
    assert state.feed(protect(V1, dcid, frames[1] + frames[0], pn=0), True) is None
    with pytest.raises(MalformedError) as e:
        state.feed(protect(V1, dcid, crypto_frame(0, b"\x02\x00\x00\x10") + frames[2], pn=1), True)
    assert e.value.reason == "quic.crypto.handshake_type" and state.done


def _frames_one_by_one(b: bytes) -> list[tuple[int, bytes]] | str:
    """Initial frames read the plain way (PADDING a byte at a time, every CRYPTO frame through
    _crypto_frame): what _ietf_frames must agree with, or the reason it must raise."""
    n, pos, out = len(b), 0, []
    try:
        while pos < n:
            ftype = b[pos]
            if ftype in (0x00, 0x01):
                pos += 1
            elif ftype == 0x06:
                pos = quic._crypto_frame(b, pos + 1, n, out)
            else:
                raise quic._err("frame.type", f"frame type {ftype:#04x} is not allowed in an Initial packet")
    except MalformedError as e:
        return str(e)
    return out


def test_ietf_frames_read_as_crypto_frame_does():
    """CRYPTO frames read inline (offsets and lengths of 1 or 2 bytes) and runs of PADDING skipped
    at once agree with the plain reading, for every varint size, cut anywhere, near the limit."""
    rng = random.Random(5)
    for _ in range(4000):
        payload = b""
        for _ in range(rng.randrange(1, 8)):
            kind = rng.random()
            if kind < 0.2:
                payload += bytes(rng.choice((1, 2, 40, 700)))
            elif kind < 0.3:
                payload += b"\x01"
            else:
                offset = rng.choice((0, 5, 63, 64, 300, 16383, 16384, MAX_CRYPTO_BYTES - 3))
                data = rng.randbytes(rng.choice((0, 3, 63, 64, 200)))
                size = rng.choice((None, 1, 2, 4, 8))
                size = None if (size == 1 and offset >= 0x40) or (size == 2 and offset >= 0x4000) else size
                lsize = rng.choice((None, 2, 4, 8))
                payload += b"\x06" + varint(offset, size) + varint(len(data), lsize) + data
        if rng.random() < 0.3:
            payload = payload[: rng.randrange(len(payload) + 1)]
        if rng.random() < 0.1:
            payload += b"\x08"
        want = _frames_one_by_one(payload)
        try:
            got: list[tuple[int, bytes]] | str = quic._ietf_frames(payload)
        except MalformedError as e:
            got = str(e)
        assert got == want, payload.hex()
