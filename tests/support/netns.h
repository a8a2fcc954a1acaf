/* Namespaces for the connect/server suites: a private network stack (no other test can hold a
 * port in it) and a private /etc/hosts, both only for the forked test process. Need
 * CAP_SYS_ADMIN; without it the helpers say so and the test runs in the host's namespaces. */
#ifndef RS_TEST_NETNS_H
#define RS_TEST_NETNS_H

#include <stdbool.h>

/* Fixture setup, added before t_setup (sockets, and on io_uring the ring's worker threads, must
 * be created inside the namespace): unshare(CLONE_NEWNET) and bring lo up, so 127.0.0.0/8 and ::1
 * exist and every port is free. Not permitted (no privilege, seccomp): a note on stderr and the
 * host's namespace stays; t_netns_isolated() tells which happened. */
void t_netns_setup(void);
bool t_netns_isolated(void);

/* Give this process its own mount namespace in which /etc/hosts reads as text (a bind mount of a
 * temporary file, removed at once). true on success; false with a note on stderr if not
 * permitted. glibc reads /etc/hosts on every lookup, so getaddrinfo sees it immediately. */
bool t_netns_hosts(const char *text);

#endif
