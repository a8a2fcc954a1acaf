/* rshttpd's request parser and target -> path mapping (http_parse.h). Strict on purpose: anything
 * two parsers could read differently (bare CR or LF, obs-fold, space before a colon, Transfer-Encoding,
 * repeated Content-Length) is refused rather than guessed at, since request smuggling lives in
 * exactly those differences (RFC 9112 section 11.2). */
#include "http_parse.h"

#include <stdint.h>
#include <string.h>

/* RFC 9110 5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

static bool ieq(const char *a, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

/* A Connection value: comma-separated tokens. */
static void connection_tokens(const char *v, size_t n, bool *close, bool *keep)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (ieq(v + s, i - s, "close"))
            *close = true;
        else if (ieq(v + s, i - s, "keep-alive"))
            *keep = true;
    }
}

struct fields {
    int hosts, lengths;
    bool close, keep;
};

/* One complete header field; 0 or -400. */
static int field(struct http_req *req, struct fields *f, const char *name, size_t nlen, const char *v,
                 size_t vlen)
{
    if (ieq(name, nlen, "content-length")) {
        /* a list ("5, 5") or a repeat is refused, not reconciled: two readers may pick different ones */
        if (++f->lengths > 1 || vlen == 0 || vlen > 15)
            return -400;
        unsigned long long x = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return -400;
            x = x * 10 + (unsigned)(v[i] - '0');
        }
        req->content_length = x;
        req->has_body = x > 0;
    } else if (ieq(name, nlen, "transfer-encoding")) {
        return -400; /* no request body is accepted, and chunked is not parsed */
    } else if (ieq(name, nlen, "host")) {
        f->hosts++;
    } else if (ieq(name, nlen, "connection")) {
        connection_tokens(v, vlen, &f->close, &f->keep);
    } else if (ieq(name, nlen, "if-modified-since")) {
        time_t t;
        if (!req->has_ims && http_parse_date(v, vlen, &t) == 0) {
            req->has_ims = true;
            req->ims = t;
        }
    }
    return 0;
}

static int parse_head(const char *buf, size_t len, struct http_req *req)
{
    const unsigned char *b = (const unsigned char *)buf;
    memset(req, 0, sizeof *req);
    size_t i = 0;

    /* RFC 9112 2.2: empty lines before the request line are ignored */
    while (i < len && (b[i] == '\r' || b[i] == '\n')) {
        if (b[i] == '\n' || (i + 1 < len && b[i + 1] != '\n'))
            return -400;
        if (i + 1 >= len)
            return 0;
        i += 2;
        if (i > HTTP_MAX_HEADER)
            return -431;
    }

    /* method SP */
    size_t m0 = i;
    while (i < len && is_tchar(b[i]))
        i++;
    if (i - m0 > 32)
        return -400;
    if (i == len)
        return 0;
    if (b[i] != ' ' || i == m0)
        return -400;
    size_t mlen = i - m0;
    if (mlen == 3 && memcmp(b + m0, "GET", 3) == 0)
        req->method = HTTP_GET;
    else if (mlen == 4 && memcmp(b + m0, "HEAD", 4) == 0)
        req->method = HTTP_HEAD;
    else
        req->method = HTTP_OTHER;
    i++;

    /* request-target SP: visible ASCII only */
    size_t t0 = i;
    while (i < len && b[i] > 0x20 && b[i] < 0x7f) {
        i++;
        if (i - t0 > HTTP_MAX_TARGET)
            return -414;
    }
    if (i == len)
        return 0;
    if (b[i] != ' ' || i == t0)
        return -400;
    req->target = buf + t0;
    req->target_len = i - t0;
    i++;

    /* HTTP-version CRLF, checked byte by byte so garbage is refused before the line ends */
    static const char ver[] = "HTTP/d.d\r\n";
    int major = 0;
    for (size_t k = 0; k < sizeof ver - 1; k++, i++) {
        if (i == len)
            return 0;
        if (ver[k] == 'd') {
            if (b[i] < '0' || b[i] > '9')
                return -400;
            if (k == 5)
                major = b[i] - '0';
            else
                req->minor = b[i] - '0';
        } else if (b[i] != (unsigned char)ver[k]) {
            return -400;
        }
    }
    if (major != 1 || req->minor > 1)
        return -505;

    /* header fields */
    struct fields f = { 0 };
    int nfields = 0;
    for (;;) {
        if (i > HTTP_MAX_HEADER)
            return -431;
        if (i == len)
            return 0;
        if (b[i] == '\r') {
            if (i + 1 == len)
                return 0;
            if (b[i + 1] != '\n')
                return -400;
            i += 2;
            break;
        }
        if (b[i] == ' ' || b[i] == '\t')
            return -400; /* obs-fold (RFC 9112 5.2: reject or replace; we reject) */
        if (++nfields > HTTP_MAX_FIELDS)
            return -431;
        size_t n0 = i;
        while (i < len && is_tchar(b[i]))
            i++;
        if (i == len)
            return i - n0 > HTTP_MAX_HEADER ? -431 : 0;
        if (b[i] != ':' || i == n0)
            return -400; /* includes whitespace before the colon (RFC 9112 5.1) */
        size_t nlen = i - n0;
        i++;
        while (i < len && (b[i] == ' ' || b[i] == '\t'))
            i++;
        size_t v0 = i;
        while (i < len && (b[i] == '\t' || (b[i] >= 0x20 && b[i] != 0x7f)))
            i++;
        if (i - v0 > HTTP_MAX_HEADER)
            return -431;
        if (i == len)
            return 0;
        if (b[i] != '\r')
            return -400; /* bare LF, NUL or another control byte */
        if (i + 1 == len)
            return 0;
        if (b[i + 1] != '\n')
            return -400;
        size_t v1 = i;
        while (v1 > v0 && (b[v1 - 1] == ' ' || b[v1 - 1] == '\t'))
            v1--;
        int r = field(req, &f, buf + n0, nlen, buf + v0, v1 - v0);
        if (r < 0)
            return r;
        i += 2;
    }
    if (i > HTTP_MAX_HEADER)
        return -431;
    /* RFC 9112 3.2: a 1.1 request without exactly one Host is a 400 */
    if (f.hosts > 1 || (req->minor == 1 && f.hosts == 0))
        return -400;
    req->keep_alive = req->minor == 1 ? !f.close : (f.keep && !f.close);
    return (int)i;
}

int http_parse_request(const char *buf, size_t len, struct http_req *req)
{
    int r = parse_head(buf, len, req);
    /* still incomplete with more than a whole head's worth buffered: it can never fit */
    if (r == 0 && len > HTTP_MAX_HEADER)
        r = -431;
    return r;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int http_target_path(const char *target, size_t len, char *out, size_t cap, bool *dir)
{
    const unsigned char *t = (const unsigned char *)target;
    size_t i = 0;
    if (!cap)
        return -414;
    if (cap > HTTP_MAX_PATH + 1)
        cap = HTTP_MAX_PATH + 1;
    if (len >= 7 && ieq(target, 7, "http://"))
        i = 7;
    else if (len >= 8 && ieq(target, 8, "https://"))
        i = 8;
    if (i) {
        /* absolute-form: the authority is skipped (one root serves every host name) */
        size_t a0 = i;
        while (i < len && t[i] != '/' && t[i] != '?' && t[i] != '#')
            i++;
        if (i == a0)
            return -400;
    } else if (len == 0 || t[0] != '/') {
        return -400; /* authority-form and asterisk-form have no file behind them */
    }

    size_t o = 0;   /* bytes in out */
    size_t seg = 0; /* where the current segment starts in out */
    bool last_empty = true;
    for (;; i++) {
        int c;
        bool end = i >= len || t[i] == '?' || t[i] == '#';
        if (end) {
            c = '/';
        } else if (t[i] == '%') {
            int h = i + 2 < len ? hexval(t[i + 1]) : -1;
            int l = h >= 0 ? hexval(t[i + 2]) : -1;
            if (l < 0)
                return -400;
            c = h * 16 + l;
            i += 2;
            if (c < 0x20 || c == 0x7f)
                return -400; /* %00 would cut the path short; other controls have no business here */
        } else {
            c = t[i];
            if (c < 0x20 || c == 0x7f)
                return -400;
        }
        if (c == '\\')
            return -403; /* a separator on other systems: never a name character here */
        if (c == '/') {
            size_t n = o - seg;
            if (n == 2 && out[seg] == '.' && out[seg + 1] == '.')
                return -403; /* refused, not normalised: "/a/../b" is almost always a probe */
            if (n == 0 || (n == 1 && out[seg] == '.')) {
                o = seg; /* drop the empty or "." segment (and the '/' written before it) */
                if (o > 0)
                    o--;
                last_empty = true;
            } else {
                last_empty = false;
            }
            if (end)
                break;
            if (o > 0) {
                if (o + 1 >= cap)
                    return -414;
                out[o++] = '/';
            }
            seg = o;
            continue;
        }
        if (o + 1 >= cap)
            return -414;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    *dir = last_empty;
    return (int)o;
}

static const char wday_name[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char mon_name[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Days since 1970-01-01 of a proleptic Gregorian date (pure arithmetic: no TZ, no libc state). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

void http_date(time_t t, char out[30])
{
    long long s = (long long)t;
    long long days = s >= 0 ? s / 86400 : (s - 86399) / 86400;
    long long sod = s - days * 86400;
    /* civil_from_days */
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = (long long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y < 0)
        y = 0;
    if (y > 9999)
        y = 9999;
    int wd = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
    memcpy(out, wday_name[wd], 3);
    memcpy(out + 3, ", ", 2);
    put2(out + 5, d);
    out[7] = ' ';
    memcpy(out + 8, mon_name[m - 1], 3);
    out[11] = ' ';
    put2(out + 12, (unsigned)(y / 100));
    put2(out + 14, (unsigned)(y % 100));
    out[16] = ' ';
    put2(out + 17, (unsigned)(sod / 3600));
    out[19] = ':';
    put2(out + 20, (unsigned)(sod / 60 % 60));
    out[22] = ':';
    put2(out + 23, (unsigned)(sod % 60));
    memcpy(out + 25, " GMT", 5);
}

/* n digits at p (spaces allowed before them when lead_sp, for asctime's day) */
static int num(const char *p, size_t n, bool lead_sp, unsigned *v)
{
    *v = 0;
    bool seen = false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ' && lead_sp && !seen)
            continue;
        if (p[i] < '0' || p[i] > '9')
            return -1;
        seen = true;
        *v = *v * 10 + (unsigned)(p[i] - '0');
    }
    return seen ? 0 : -1;
}

static int month(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(p, mon_name[i], 3) == 0)
            return i + 1;
    return -1;
}

/* "08:49:37" */
static int hms(const char *p, unsigned *h, unsigned *mi, unsigned *s)
{
    if (p[2] != ':' || p[5] != ':' || num(p, 2, false, h) || num(p + 3, 2, false, mi) ||
        num(p + 6, 2, false, s))
        return -1;
    return *h < 24 && *mi < 60 && *s <= 60 ? 0 : -1;
}

int http_parse_date(const char *s, size_t len, time_t *t)
{
    unsigned d, y, h, mi, sec;
    int m;
    const char *comma = memchr(s, ',', len < 12 ? len : 12);
    if (comma && len == 29 && comma == s + 3) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || memcmp(s + 25, " GMT", 4) != 0)
            return -1;
        if (num(s + 5, 2, false, &d) || (m = month(s + 8)) < 0 || num(s + 12, 4, false, &y) ||
            hms(s + 17, &h, &mi, &sec))
            return -1;
    } else if (comma) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit year: RFC 9110 5.6.7's 50-year rule,
         * simplified to 1970-2069) */
        size_t k = (size_t)(comma - s) + 1;
        if (len != k + 23 || s[k] != ' ' || s[k + 3] != '-' || s[k + 7] != '-' || s[k + 10] != ' ' ||
            memcmp(s + k + 19, " GMT", 4) != 0)
            return -1;
        if (num(s + k + 1, 2, false, &d) || (m = month(s + k + 4)) < 0 || num(s + k + 8, 2, false, &y) ||
            hms(s + k + 11, &h, &mi, &sec))
            return -1;
        y += y < 70 ? 2000 : 1900;
    } else if (len == 24) {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        if (s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
            return -1;
        if ((m = month(s + 4)) < 0 || num(s + 8, 2, true, &d) || hms(s + 11, &h, &mi, &sec) ||
            num(s + 20, 4, false, &y))
            return -1;
    } else {
        return -1;
    }
    if (d < 1 || d > 31 || y < 1970)
        return -1;
    long long v = days_from_civil(y, (unsigned)m, d) * 86400 + h * 3600 + mi * 60 + sec;
    if ((long long)(time_t)v != v)
        return -1;
    *t = (time_t)v;
    return 0;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
