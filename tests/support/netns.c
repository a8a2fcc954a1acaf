/* Private network and mount namespaces for single test processes (see netns.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "netns.h"

static bool isolated;

static int lo_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int r = 0;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        r = -errno;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (r == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        r = -errno;
    close(fd);
    return r;
}

void t_netns_setup(void)
{
    isolated = false;
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "note: no private network namespace (%s): using the host's\n", strerror(errno));
        return;
    }
    /* From here on the process is in the new namespace: failing to bring lo up is a failure. */
    int r = lo_up();
    ck_assert_msg(r == 0, "bringing lo up in the new namespace: %s", strerror(-r));
    isolated = true;
}

bool t_netns_isolated(void) { return isolated; }

bool t_netns_hosts(const char *text)
{
    if (unshare(CLONE_NEWNS) < 0) {
        fprintf(stderr, "note: no private mount namespace (%s): /etc/hosts unchanged\n", strerror(errno));
        return false;
    }
    /* Keep the bind mount out of the parent's namespace even where / is a shared mount. The
     * types are ignored for these flags; they are named so that memcheck sees no NULL string. */
    ck_assert_msg(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0, "making / private: %s",
                  strerror(errno));
    char path[] = "/tmp/rs-test-hosts-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    close(fd);
    int r =
        w == (ssize_t)len && chmod(path, 0644) == 0 ? mount(path, "/etc/hosts", "none", MS_BIND, NULL) : -1;
    int e = errno;
    unlink(path); /* the mount keeps the file alive */
    ck_assert_msg(r == 0, "bind-mounting %s over /etc/hosts: %s", path, strerror(e));
    return true;
}
