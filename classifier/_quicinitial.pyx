# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled QUIC Initial keys and packet opening (twin of classifier/inspect/quic.py ``_Keys``).

A QUIC flow's first Initial costs a key derivation (HKDF-SHA256, RFC 9001 5.2), an AES-ECB
header-protection context and an AES-128-GCM one: through hashlib and ``cryptography`` that is a
dozen Python-level objects and OpenSSL look-ups, most of the flow's inspection time, for about a
microsecond of cryptography. Here the same primitives of OpenSSL's libcrypto are called from C:
SHA-256 through its plain digest contexts (HMAC spelled out as RFC 2104, each secret's pads
absorbed once), AES through EVP contexts made once per process and re-keyed per packet. Nothing
is cached across packets or flows but what ``_Keys`` keeps: the key, iv and hp of one (version,
DCID). The tag is checked by OpenSSL as ``AESGCM.decrypt`` checks it: a packet either opens to
the plaintext the reference gives or does not open (tests/test_quic_twins.py compares them).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy, memset


cdef extern from "openssl/sha.h":
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c) nogil
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n) nogil
    int SHA256_Final(unsigned char *md, SHA256_CTX *c) nogil


cdef extern from "openssl/evp.h":
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    int EVP_CTRL_GCM_SET_TAG
    EVP_CIPHER *EVP_CIPHER_fetch(void *libctx, const char *algorithm, const char *properties)
    EVP_CIPHER_CTX *EVP_CIPHER_CTX_new()
    int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *ctx, int pad)
    int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr)
    int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, void *impl,
                           const unsigned char *key, const unsigned char *iv)
    int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                          const unsigned char *inp, int inl)
    int EVP_DecryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, void *impl,
                           const unsigned char *key, const unsigned char *iv)
    int EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                          const unsigned char *inp, int inl)
    int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl)


cdef extern from "openssl/err.h":
    void ERR_clear_error()


# One context per primitive for the process, keyed anew for each packet (the GIL is held
# throughout every call that uses them). A failed set-up leaves the module unimportable, so
# compiled_function finds no twin and the reference runs.
cdef EVP_CIPHER_CTX *_ECB = NULL
cdef EVP_CIPHER_CTX *_GCM = NULL


cdef int _setup() except -1:
    global _ECB, _GCM
    cdef EVP_CIPHER *ecb = EVP_CIPHER_fetch(NULL, b"AES-128-ECB", NULL)
    cdef EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, b"AES-128-GCM", NULL)
    if ecb == NULL or gcm == NULL:
        ERR_clear_error()
        raise ImportError("libcrypto has no AES-128-ECB or AES-128-GCM")
    _ECB = EVP_CIPHER_CTX_new()
    _GCM = EVP_CIPHER_CTX_new()
    if (
        _ECB == NULL
        or _GCM == NULL
        or EVP_EncryptInit_ex(_ECB, ecb, NULL, NULL, NULL) != 1
        or EVP_CIPHER_CTX_set_padding(_ECB, 0) != 1
        or EVP_DecryptInit_ex(_GCM, gcm, NULL, NULL, NULL) != 1
    ):
        ERR_clear_error()
        raise ImportError("libcrypto AES contexts could not be made")
    return 0


_setup()


cdef struct _Mac:
    SHA256_CTX inner  # SHA-256 state after the key XOR ipad block
    SHA256_CTX outer  # after the key XOR opad block


cdef void _mac_key(_Mac *m, const unsigned char *key, size_t n) noexcept:
    """Absorb an HMAC-SHA256 key (RFC 2104; a key over the block size is hashed first)."""
    cdef unsigned char k[64]
    cdef unsigned char pad[64]
    cdef SHA256_CTX c
    cdef size_t i
    memset(k, 0, 64)
    if n > 64:
        SHA256_Init(&c)
        SHA256_Update(&c, key, n)
        SHA256_Final(k, &c)
    else:
        memcpy(k, key, n)
    for i in range(64):
        pad[i] = k[i] ^ 0x36
    SHA256_Init(&m.inner)
    SHA256_Update(&m.inner, pad, 64)
    for i in range(64):
        pad[i] = k[i] ^ 0x5C
    SHA256_Init(&m.outer)
    SHA256_Update(&m.outer, pad, 64)


cdef void _mac(const _Mac *m, const unsigned char *msg, size_t n, unsigned char *out) noexcept:
    """HMAC-SHA256 of ``msg`` under the absorbed key: 32 bytes into ``out``."""
    cdef SHA256_CTX c
    cdef unsigned char inner[32]
    memcpy(&c, &m.inner, sizeof(SHA256_CTX))
    SHA256_Update(&c, msg, n)
    SHA256_Final(inner, &c)
    memcpy(&c, &m.outer, sizeof(SHA256_CTX))
    SHA256_Update(&c, inner, 32)
    SHA256_Final(out, &c)


cdef inline const unsigned char *_bytes(bytes b, Py_ssize_t *n):
    n[0] = PyBytes_GET_SIZE(b)
    return <const unsigned char *>PyBytes_AS_STRING(b)


cdef class InitialKeys:
    """The client Initial protection of one (version, DCID): ``quic._Keys`` in C.

    ``schedule`` is the version's (salt, "client in" info, key info, iv info, hp info): each info is
    HKDF-Expand-Label's label block with the counter byte, as ``quic._label_info`` builds it.
    """

    cdef unsigned char _key[16]
    cdef unsigned char _iv[12]
    cdef unsigned char _hp[16]

    def __init__(self, tuple schedule, bytes dcid):
        cdef bytes salt, client_in, key_info, iv_info, hp_info
        salt, client_in, key_info, iv_info, hp_info = schedule
        cdef _Mac m
        cdef unsigned char secret[32]
        cdef unsigned char out[32]
        cdef Py_ssize_t n
        cdef const unsigned char *p
        p = _bytes(salt, &n)
        _mac_key(&m, p, n)
        p = _bytes(dcid, &n)
        _mac(&m, p, n, secret)  # HKDF-Extract(salt, DCID): the initial secret
        _mac_key(&m, secret, 32)
        p = _bytes(client_in, &n)
        _mac(&m, p, n, secret)  # HKDF-Expand-Label(initial, "client in", 32): one block
        _mac_key(&m, secret, 32)
        p = _bytes(key_info, &n)
        _mac(&m, p, n, out)
        memcpy(self._key, out, 16)
        p = _bytes(iv_info, &n)
        _mac(&m, p, n, out)
        memcpy(self._iv, out, 12)
        p = _bytes(hp_info, &n)
        _mac(&m, p, n, out)
        memcpy(self._hp, out, 16)

    @property
    def material(self):
        """(key, iv, hp), as ``quic.initial_key_material`` gives them."""
        return (
            PyBytes_FromStringAndSize(<const char *>self._key, 16),
            PyBytes_FromStringAndSize(<const char *>self._iv, 12),
            PyBytes_FromStringAndSize(<const char *>self._hp, 16),
        )

    def open(self, bytes d, Py_ssize_t start, Py_ssize_t pn_offset, Py_ssize_t end, long long largest):
        """Header protection removed and the packet decrypted: (plaintext, packet number length,
        packet number), or None when the tag does not verify under these keys."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(d)
        cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(d)
        cdef unsigned char mask[32]
        cdef unsigned char nonce[12]
        cdef unsigned char first, pn_bytes[4]
        cdef int outl, i, pn_len, ct_len
        cdef long long truncated = 0, pn, expected, win, hwin, candidate
        if not (0 <= start < pn_offset and pn_offset + 20 <= end <= n) or end - start > 0x3FFFFFFF:
            raise ValueError("packet bounds outside the datagram")
        if EVP_EncryptInit_ex(_ECB, NULL, NULL, self._hp, NULL) != 1 or EVP_EncryptUpdate(
            _ECB, mask, &outl, b + pn_offset + 4, 16
        ) != 1:
            ERR_clear_error()
            raise ValueError("header protection failed")
        first = b[start] ^ (mask[0] & 0x0F)
        pn_len = (first & 3) + 1
        for i in range(pn_len):
            pn_bytes[i] = b[pn_offset + i] ^ mask[1 + i]
            truncated = (truncated << 8) | pn_bytes[i]
        if largest < 0:  # before any packet number, the truncated one is it (RFC 9000 A.3)
            pn = truncated
        else:
            expected = largest + 1
            win = (<long long>1) << (pn_len * 8)
            hwin = win >> 1
            candidate = (expected & ~(win - 1)) | truncated
            if candidate <= expected - hwin and candidate < ((<long long>1) << 62) - win:
                pn = candidate + win
            elif candidate > expected + hwin and candidate >= win:
                pn = candidate - win
            else:
                pn = candidate
        memcpy(nonce, self._iv, 12)
        for i in range(8):
            nonce[11 - i] ^= (pn >> (8 * i)) & 0xFF
        ct_len = <int>(end - pn_offset - pn_len - 16)
        payload = PyBytes_FromStringAndSize(NULL, ct_len)
        cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(payload)
        cdef unsigned char tag[16]
        memcpy(tag, b + end - 16, 16)
        # The associated data is the header as sent before protection: its first byte and packet
        # number unmasked, the bytes between as they are.
        if (
            EVP_DecryptInit_ex(_GCM, NULL, NULL, self._key, nonce) != 1
            or EVP_DecryptUpdate(_GCM, NULL, &outl, &first, 1) != 1
            or EVP_DecryptUpdate(_GCM, NULL, &outl, b + start + 1, <int>(pn_offset - start - 1)) != 1
            or EVP_DecryptUpdate(_GCM, NULL, &outl, pn_bytes, pn_len) != 1
            or EVP_DecryptUpdate(_GCM, out, &outl, b + pn_offset + pn_len, ct_len) != 1
            or EVP_CIPHER_CTX_ctrl(_GCM, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1
            or EVP_DecryptFinal_ex(_GCM, out + outl, &outl) != 1
        ):
            ERR_clear_error()
            return None  # the tag does not verify: not this key's packet, or forged
        return payload, pn_len, pn
