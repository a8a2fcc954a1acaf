/* libFuzzer target for rshttpd's request parser (tools/http_parse.c): the request head, the
 * request-target -> path mapping with its escape rules, and HTTP dates. Besides "no crash", each
 * result must keep the promises of http_parse.h: a complete head is self-delimiting and every
 * prefix of it only "needs more"; a mapped path never holds "..", ".", "//", a backslash or a
 * control byte, and mapping it again (re-encoded) gives the same path; dates round-trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "fuzz-http: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

static bool is_status(int r) { return r == -400 || r == -414 || r == -431 || r == -505; }

static void check_path(const char *p, int n)
{
    CHECK(n >= 0 && n <= HTTP_MAX_PATH);
    CHECK(strlen(p) == (size_t)n);
    CHECK(n == 0 || (p[0] != '/' && p[n - 1] != '/'));
    CHECK(!strstr(p, "//"));
    CHECK(!strchr(p, '\\'));
    for (int i = 0; i < n; i++)
        CHECK((unsigned char)p[i] >= 0x20 && p[i] != 0x7f);
    /* segments: never "." or ".." */
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        CHECK(len > 0);
        CHECK(!(len == 1 && s[0] == '.'));
        CHECK(!(len == 2 && s[0] == '.' && s[1] == '.'));
        s += len + (e ? 1 : 0);
    }
}

/* Map target; on success, the path re-encoded as an origin-form target maps to itself. */
static void check_target(const char *t, size_t len)
{
    static char out[HTTP_MAX_PATH + 1], again[HTTP_MAX_PATH + 1], enc[3 * HTTP_MAX_PATH + 2];
    bool dir;
    int n = http_target_path(t, len, out, sizeof out, &dir);
    if (n < 0) {
        CHECK(n == -400 || n == -403 || n == -414);
        return;
    }
    check_path(out, n);
    size_t k = 0;
    enc[k++] = '/';
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c == '%' || c == '?' || c == '#' || c <= 0x20 || c >= 0x7f) {
            static const char hex[] = "0123456789ABCDEF";
            enc[k++] = '%';
            enc[k++] = hex[c >> 4];
            enc[k++] = hex[c & 15];
        } else {
            enc[k++] = (char)c;
        }
    }
    bool dir2;
    int n2 = http_target_path(enc, k, again, sizeof again, &dir2);
    CHECK(n2 == n);
    CHECK(memcmp(again, out, (size_t)n) == 0);
    CHECK(dir2 == (n == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_req req;
    int r = http_parse_request(buf, size, &req);
    CHECK(r >= 0 || is_status(r));
    if (r == 0)
        CHECK(size <= HTTP_MAX_HEADER);
    if (r > 0) {
        CHECK((size_t)r <= size && r <= HTTP_MAX_HEADER);
        CHECK(req.method >= HTTP_GET && req.method <= HTTP_OTHER);
        CHECK(req.minor == 0 || req.minor == 1);
        CHECK(req.target >= buf && req.target + req.target_len <= buf + r);
        CHECK(req.target_len > 0 && req.target_len <= HTTP_MAX_TARGET);
        CHECK(req.has_body == (req.content_length > 0));
        CHECK(memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
        /* self-delimiting: the head alone parses the same; its prefixes only need more */
        struct http_req again;
        CHECK(http_parse_request(buf, (size_t)r, &again) == r);
        CHECK(again.keep_alive == req.keep_alive && again.target_len == req.target_len);
        size_t cut[3] = { (size_t)r - 1, (size_t)r / 2, (size_t)r * 3 / 4 };
        for (int i = 0; i < 3; i++)
            CHECK(http_parse_request(buf, cut[i], &again) == 0);
        check_target(req.target, req.target_len);
    }
    check_target(buf, size);

    time_t t;
    if (http_parse_date(buf, size, &t) == 0 && t >= 0 && t < 253402300800LL) { /* before year 10000 */
        char d[30];
        time_t t2;
        http_date(t, d);
        CHECK(http_parse_date(d, 29, &t2) == 0);
        CHECK(t2 == t);
    }
    return 0;
}
