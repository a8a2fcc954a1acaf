/* rshttpd's HTTP/1.x request parser and request-target -> file path mapping: pure functions over
 * bytes (no I/O, no allocation), kept apart from the server so a fuzz target can drive them. */
#ifndef RSHTTPD_HTTP_PARSE_H
#define RSHTTPD_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Limits (docs/tools.md, "rshttpd"). */
#define HTTP_MAX_TARGET 8192        /* request-target bytes; longer is 414 */
#define HTTP_MAX_HEADER (16 * 1024) /* request line + header fields + the blank line; longer is 431 */
#define HTTP_MAX_FIELDS 100         /* header fields; more is 431 */
#define HTTP_MAX_PATH 4096          /* decoded path bytes; longer is 414 */

enum http_method {
    HTTP_GET = 1,
    HTTP_HEAD = 2,
    HTTP_OTHER = 3
};

struct http_req {
    int method;         /* enum http_method */
    int minor;          /* HTTP/1.<minor>: 0 or 1 */
    const char *target; /* into the caller's buffer, not NUL-terminated */
    size_t target_len;
    bool keep_alive; /* after this request: HTTP/1.1 unless "close", 1.0 only with "keep-alive" */
    bool has_ims;    /* a valid If-Modified-Since (an invalid one is ignored, RFC 9110 13.1.3) */
    time_t ims;
    unsigned long long content_length; /* 0 when absent */
    bool has_body;                     /* Content-Length > 0 */
};

/* Parse the request at the start of buf[0, len). Returns the length of the request head (request
 * line through the blank line) when it is complete and valid, 0 when more bytes are needed, or a
 * negative HTTP status for a request that must be refused: -400 (malformed, NUL or bare CR/LF,
 * obs-fold, a Transfer-Encoding, a bad or repeated Content-Length, a missing or repeated Host on
 * HTTP/1.1), -414 (target longer than HTTP_MAX_TARGET), -431 (head longer than HTTP_MAX_HEADER or
 * more than HTTP_MAX_FIELDS fields), -505 (a well-formed version other than 1.0/1.1). An error may
 * be reported before the head is complete (as soon as the bytes seen prove it). The method is not
 * judged here: req->method says what it was (405 and 413 are the caller's policy). */
int http_parse_request(const char *buf, size_t len, struct http_req *req);

/* Map a request-target to a path relative to the served root: origin-form ("/a/b?q") or
 * absolute-form ("http://host/a/b"); query and fragment dropped; percent-decoding done exactly
 * once; empty and "." segments dropped. out gets the path without a leading '/' ("" for the
 * root), NUL-terminated, and *dir whether the target ended in '/'. Returns its length, or -400
 * (not origin/absolute form, a bad %-escape, %00 or another control byte), -403 (a ".." segment,
 * a backslash — raw or encoded), -414 (longer than cap - 1 or HTTP_MAX_PATH). The result never
 * starts with '/', never contains "//", a "." or ".." segment, a backslash or a NUL. */
int http_target_path(const char *target, size_t len, char *out, size_t cap, bool *dir);

/* Format t as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 characters and a NUL). */
void http_date(time_t t, char out[30]);

/* Parse an HTTP-date (IMF-fixdate, RFC 850 or asctime form). 0 and *t, or -1. */
int http_parse_date(const char *s, size_t len, time_t *t);

/* The reason phrase of a status code ("Not Found"), "Unknown" for others. */
const char *http_reason(int status);

#endif
