/* What every file of the library shares that is not the engine's: the mark of a public symbol
 * (everything else is hidden: gnu_symbol_visibility and lib/ringsock.map) and socket defaults
 * written once. */
#ifndef RS_EXPORT_I_H
#define RS_EXPORT_I_H

#include <sys/socket.h>

#define EXPORT __attribute__((visibility("default")))

/* listen(2)'s backlog when the caller gives none: socket.py's min(SOMAXCONN, 128) */
#define RS_DEFAULT_BACKLOG (SOMAXCONN < 128 ? SOMAXCONN : 128)

#endif
