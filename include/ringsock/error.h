/* ringsock errors: every call returns >= 0 on success and a negative errno value on failure. */
#ifndef RINGSOCK_ERROR_H
#define RINGSOCK_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* A human-readable message for err (a negative errno value as returned by any rs_ call; a
 * positive errno is accepted too). Never NULL; static storage; thread-safe. Unknown values give
 * "unknown error". */
const char *rs_strerror(int err);

/* The symbolic name of err ("ETIMEDOUT", ...), or "UNKNOWN". Static storage. */
const char *rs_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
