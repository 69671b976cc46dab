/* BLAKE2b-128 for minlog._speedups (see _blake2b.c). */
#ifndef MINLOG_BLAKE2B_H
#define MINLOG_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

/* hashlib.blake2b(data, digest_size=16).digest() into out[16]. */
void minlog_blake2b16(const uint8_t *data, size_t len, uint8_t out[16]);

#endif
