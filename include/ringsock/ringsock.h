/* ringsock: Python's socket layer for C, on io_uring. The one header to include. */
#ifndef RINGSOCK_H
#define RINGSOCK_H

#include <ringsock/version.h>
#include <ringsock/error.h>
#include <ringsock/loop.h>
#include <ringsock/socket.h>
#include <ringsock/net.h>
#include <ringsock/file.h>
#include <ringsock/async.h>

#endif
