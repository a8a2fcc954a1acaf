/* The library's own version, for programs that link dynamically and want to know what they got. */
#define _GNU_SOURCE
#include "ringsock/version.h"
#include "export_i.h"

EXPORT unsigned rs_version(void) { return RS_VERSION_HEX; }
EXPORT const char *rs_version_string(void) { return RS_VERSION_STRING; }
