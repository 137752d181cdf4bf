/* FUNCTION DUMP / RESTORE payloads: RDB strings (plain, integer-encoded or
 * LZF-compressed, which Redis writes when compression saves space), the RDB
 * version and Redis's CRC64. */
#include "proxy/commands/function_payload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RDB_VERSION 10
#define RDB_OPCODE_FUNCTION_PRE_GA 246
#define RDB_OPCODE_FUNCTION2 245

/* ---- CRC64 --------------------------------------------------------------------- */

static uint64_t crc_table[256];

static void crc_init(void)
{
    /* The Jones polynomial 0xad93d23594c935a9, bit-reflected. */
    const uint64_t poly = 0x95ac9329ac4bc9b5ULL;
    for (int i = 0; i < 256; i++) {
        uint64_t c = (uint64_t)i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        crc_table[i] = c;
    }
}

uint64_t crc64_redis(uint64_t crc, const unsigned char *p, size_t len)
{
    if (!crc_table[1]) crc_init();
    for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

/* ---- encoding ------------------------------------------------------------------- */

static size_t put_len(unsigned char *o, uint64_t len)
{
    if (len < (1 << 6)) {
        o[0] = (unsigned char)len;
        return 1;
    }
    if (len < (1 << 14)) {
        o[0] = (unsigned char)(0x40 | (len >> 8));
        o[1] = (unsigned char)(len & 0xff);
        return 2;
    }
    if (len <= UINT32_MAX) {
        o[0] = 0x80;
        for (int i = 0; i < 4; i++) o[1 + i] = (unsigned char)(len >> (24 - 8 * i));
        return 5;
    }
    o[0] = 0x81;
    for (int i = 0; i < 8; i++) o[1 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 9;
}

char *function_payload_encode(int n, const char *const *codes, const size_t *lens, size_t *len)
{
    size_t cap = 10;
    for (int i = 0; i < n; i++) cap += 1 + 9 + lens[i];
    unsigned char *o = malloc(cap);
    if (!o) abort();
    size_t w = 0;
    for (int i = 0; i < n; i++) {
        o[w++] = RDB_OPCODE_FUNCTION2;
        w += put_len(o + w, lens[i]);
        memcpy(o + w, codes[i], lens[i]);
        w += lens[i];
    }
    o[w++] = RDB_VERSION & 0xff;
    o[w++] = (RDB_VERSION >> 8) & 0xff;
    uint64_t crc = crc64_redis(0, o, w);
    for (int i = 0; i < 8; i++) o[w++] = (unsigned char)(crc >> (8 * i));
    *len = w;
    return (char *)o;
}

/* ---- decoding ------------------------------------------------------------------- */

typedef struct reader {
    const unsigned char *p;
    size_t pos, end;
} reader;

/* An RDB length; *encoded set for the special string encodings (the value
 * is then the encoding type). -1 when the input ends. */
static int get_len(reader *r, uint64_t *v, int *encoded)
{
    *encoded = 0;
    if (r->pos >= r->end) return -1;
    unsigned char b = r->p[r->pos++];
    switch (b >> 6) {
    case 0: *v = b & 0x3f; return 0;
    case 1:
        if (r->pos >= r->end) return -1;
        *v = ((uint64_t)(b & 0x3f) << 8) | r->p[r->pos++];
        return 0;
    case 3: *encoded = 1; *v = b & 0x3f; return 0;
    default: break;
    }
    int bytes = b == 0x80 ? 4 : b == 0x81 ? 8 : 0;
    if (!bytes || r->end - r->pos < (size_t)bytes) return -1;
    *v = 0;
    for (int i = 0; i < bytes; i++) *v = (*v << 8) | r->p[r->pos++];
    return 0;
}

/* LZF as liblzf writes it: literal runs (ctrl < 32: ctrl + 1 bytes) and
 * back references (length in the top 3 bits, 7 = one more length byte). */
static int lzf_expand(const unsigned char *in, size_t inlen, unsigned char *out, size_t outlen)
{
    size_t i = 0, o = 0;
    while (i < inlen) {
        unsigned ctrl = in[i++];
        if (ctrl < 32) {
            size_t run = ctrl + 1;
            if (inlen - i < run || outlen - o < run) return -1;
            memcpy(out + o, in + i, run);
            i += run;
            o += run;
            continue;
        }
        size_t n = ctrl >> 5;
        if (n == 7) {
            if (i >= inlen) return -1;
            n += in[i++];
        }
        if (i >= inlen) return -1;
        size_t back = ((size_t)(ctrl & 0x1f) << 8) + in[i++] + 1;
        n += 2;
        if (back > o || outlen - o < n) return -1;
        for (size_t k = 0; k < n; k++, o++) out[o] = out[o - back]; /* may overlap */
    }
    return o == outlen ? 0 : -1;
}

static int get_string(reader *r, char **s, size_t *slen)
{
    uint64_t v;
    int encoded;
    if (get_len(r, &v, &encoded) != 0) return -1;
    if (!encoded) {
        if (r->end - r->pos < v) return -1;
        *s = malloc(v ? v : 1);
        if (!*s) abort();
        memcpy(*s, r->p + r->pos, v);
        *slen = v;
        r->pos += v;
        return 0;
    }
    if (v <= 2) { /* integers: 1, 2 or 4 bytes, little endian */
        int bytes = 1 << v;
        if (r->end - r->pos < (size_t)bytes) return -1;
        uint32_t u = 0;
        for (int i = 0; i < bytes; i++) u |= (uint32_t)r->p[r->pos + i] << (8 * i);
        r->pos += bytes;
        long long val = bytes == 1 ? (int8_t)u : bytes == 2 ? (int16_t)u : (int32_t)u;
        char buf[24];
        int n = snprintf(buf, sizeof(buf), "%lld", val);
        *s = malloc((size_t)n);
        if (!*s) abort();
        memcpy(*s, buf, (size_t)n);
        *slen = (size_t)n;
        return 0;
    }
    if (v != 3) return -1;
    uint64_t clen, ulen;
    if (get_len(r, &clen, &encoded) != 0 || encoded) return -1;
    if (get_len(r, &ulen, &encoded) != 0 || encoded) return -1;
    if (r->end - r->pos < clen || ulen > (uint64_t)1 << 32) return -1;
    *s = malloc(ulen ? ulen : 1);
    if (!*s) abort();
    if (lzf_expand(r->p + r->pos, clen, (unsigned char *)*s, ulen) != 0) {
        free(*s);
        *s = NULL;
        return -1;
    }
    r->pos += clen;
    *slen = ulen;
    return 0;
}

/* The format of Redis 7.0's release candidates: name, engine, an optional
 * description and the code without its shebang, which is rebuilt here. */
static int read_pre_ga(reader *r, char **code, size_t *code_len, const char **err)
{
    char *name = NULL, *engine = NULL, *desc = NULL, *body = NULL;
    size_t name_len, engine_len, desc_len, body_len;
    uint64_t has_desc;
    int encoded, rc = -1;
    if (get_string(r, &name, &name_len) != 0) {
        *err = "ERR Failed loading library name";
        goto done;
    }
    if (get_string(r, &engine, &engine_len) != 0) {
        *err = "ERR Failed loading engine name";
        goto done;
    }
    if (get_len(r, &has_desc, &encoded) != 0 || encoded) {
        *err = "ERR Failed loading library description indicator";
        goto done;
    }
    if (has_desc && get_string(r, &desc, &desc_len) != 0) {
        *err = "ERR Failed loading library description";
        goto done;
    }
    if (get_string(r, &body, &body_len) != 0) {
        *err = "ERR Failed loading library payload";
        goto done;
    }
    *code_len = 2 + engine_len + 6 + name_len + 1 + body_len;
    *code = malloc(*code_len);
    if (!*code) abort();
    char *o = *code;
    memcpy(o, "#!", 2), o += 2;
    memcpy(o, engine, engine_len), o += engine_len;
    memcpy(o, " name=", 6), o += 6;
    memcpy(o, name, name_len), o += name_len;
    *o++ = '\n';
    memcpy(o, body, body_len);
    rc = 0;
done:
    free(name);
    free(engine);
    free(desc);
    free(body);
    return rc;
}

void function_payload_free(int n, char **codes, size_t *lens)
{
    for (int i = 0; i < n; i++) free(codes[i]);
    free(codes);
    free(lens);
}

int function_payload_decode(const char *p, size_t len, int *n, char ***codes, size_t **lens, const char **err)
{
    const unsigned char *u = (const unsigned char *)p;
    *n = 0;
    *codes = NULL;
    *lens = NULL;
    /* Redis's verifyDumpPayload. */
    if (len < 10) goto bad_payload;
    unsigned ver = u[len - 10] | (unsigned)u[len - 9] << 8;
    if (ver > RDB_VERSION) goto bad_payload;
    uint64_t crc = 0;
    for (int i = 0; i < 8; i++) crc |= (uint64_t)u[len - 8 + i] << (8 * i);
    if (crc64_redis(0, u, len - 8) != crc) goto bad_payload;

    /* Strings may run into the version and checksum, as with Redis's
     * reader; only a new entry must start before them. */
    reader r = {u, 0, len};
    int cap = 0;
    while (r.end - r.pos > 10) {
        unsigned char type = u[r.pos++];
        if (type != RDB_OPCODE_FUNCTION2 && type != RDB_OPCODE_FUNCTION_PRE_GA) {
            *err = "ERR given type is not a function";
            goto fail;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            *codes = realloc(*codes, sizeof(**codes) * (size_t)cap);
            *lens = realloc(*lens, sizeof(**lens) * (size_t)cap);
            if (!*codes || !*lens) abort();
        }
        if (type == RDB_OPCODE_FUNCTION_PRE_GA) {
            if (read_pre_ga(&r, &(*codes)[*n], &(*lens)[*n], err) != 0) goto fail;
        } else if (get_string(&r, &(*codes)[*n], &(*lens)[*n]) != 0) {
            *err = "ERR Failed loading library payload";
            goto fail;
        }
        (*n)++;
    }
    return 0;
bad_payload:
    *err = "ERR DUMP payload version or checksum are wrong";
    return -1;
fail:
    function_payload_free(*n, *codes, *lens);
    *n = 0;
    *codes = NULL;
    *lens = NULL;
    return -1;
}
