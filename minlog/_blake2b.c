/*
 * BLAKE2b with a 16-byte digest (RFC 7693; unkeyed, no salt or personalisation), as
 * hashlib.blake2b(data, digest_size=16) computes it. Used by minlog._speedups for the
 * dedup keys; tests/test_scan.py holds it equal to hashlib's.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h> /* PY_LITTLE_ENDIAN */

#include <stdint.h>
#include <string.h>

#include "_blake2b.h"


static const uint64_t blake2b_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t
load64_le(const uint8_t *p)
{
#if PY_LITTLE_ENDIAN
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
#else
    return ((uint64_t)p[0]) | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
#endif
}

static inline void
store64_le(uint8_t *p, uint64_t w)
{
#if PY_LITTLE_ENDIAN
    memcpy(p, &w, sizeof w);
#else
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(w >> (8 * i));
    }
#endif
}

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

#define G(r, i, a, b, c, d)                          \
    do {                                             \
        a = a + b + m[blake2b_sigma[r][2 * (i)]];     \
        d = ROTR64(d ^ a, 32);                       \
        c = c + d;                                   \
        b = ROTR64(b ^ c, 24);                       \
        a = a + b + m[blake2b_sigma[r][2 * (i) + 1]]; \
        d = ROTR64(d ^ a, 16);                       \
        c = c + d;                                   \
        b = ROTR64(b ^ c, 63);                       \
    } while (0)

#define ROUND(r)                               \
    do {                                       \
        G(r, 0, v[0], v[4], v[8], v[12]);      \
        G(r, 1, v[1], v[5], v[9], v[13]);      \
        G(r, 2, v[2], v[6], v[10], v[14]);     \
        G(r, 3, v[3], v[7], v[11], v[15]);     \
        G(r, 4, v[0], v[5], v[10], v[15]);     \
        G(r, 5, v[1], v[6], v[11], v[12]);     \
        G(r, 6, v[2], v[7], v[8], v[13]);      \
        G(r, 7, v[3], v[4], v[9], v[14]);      \
    } while (0)

/* One compression of the 128-byte block; t is the byte count so far (inputs here are
   far below 2**64 bytes, so the high word of the counter is 0). */
static void
blake2b_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last)
{
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        m[i] = load64_le(block + 8 * i);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= t;
    /* v[13] ^= high word of t: always 0 */
    if (last) {
        v[14] = ~v[14];
    }
    ROUND(0);
    ROUND(1);
    ROUND(2);
    ROUND(3);
    ROUND(4);
    ROUND(5);
    ROUND(6);
    ROUND(7);
    ROUND(8);
    ROUND(9);
    ROUND(10);
    ROUND(11);
    for (int i = 0; i < 8; i++) {
        h[i] ^= v[i] ^ v[i + 8];
    }
}

#undef ROUND
#undef G
#undef ROTR64

/* hashlib.blake2b(data, digest_size=16).digest() into out[16]. */
void
minlog_blake2b16(const uint8_t *data, size_t len, uint8_t out[16])
{
    uint64_t h[8];
    uint8_t block[128];
    uint64_t t = 0;

    memcpy(h, blake2b_iv, sizeof h);
    h[0] ^= 0x01010000ULL ^ 16; /* depth 1, fanout 1, no key, 16-byte digest */
    while (len > 128) {
        t += 128;
        blake2b_compress(h, data, t, 0);
        data += 128;
        len -= 128;
    }
    memset(block, 0, sizeof block);
    if (len) {
        memcpy(block, data, len);
    }
    t += len;
    blake2b_compress(h, block, t, 1);
    store64_le(out, h[0]);
    store64_le(out + 8, h[1]);
}
