/*
 * Small helpers shared by the modules.
 *
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "internal.h"

char *xstrdup(const char *s)
{
    char *copy = strdup(s);

    if (copy == NULL)
        error_set(VMM_ENOMEM, "out of memory copying a string");
    return copy;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) {
        error_set(VMM_ENOMEM, "out of memory formatting a string");
        return NULL;
    }
    return s;
}

/*
 * Closing an inotify instance that has watched something waits for the
 * kernel's grace period (fsnotify's SRCU): 0.1 ms on a quiet machine,
 * over 10 ms on a busy one. Instances are therefore kept for reuse, a few
 * per process, instead of being closed after each wait.
 */
#define INOTIFY_SPARES 8

static pthread_mutex_t inotify_lock = PTHREAD_MUTEX_INITIALIZER;
static int inotify_spare[INOTIFY_SPARES];
static int inotify_spares;

int inotify_take(void)
{
    int fd = -1;

    pthread_mutex_lock(&inotify_lock);
    if (inotify_spares > 0)
        fd = inotify_spare[--inotify_spares];
    pthread_mutex_unlock(&inotify_lock);
    if (fd < 0)
        fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd;
}

void inotify_give_back(int fd, int wd)
{
    char events[4096];

    if (fd < 0)
        return;
    if (wd >= 0)
        inotify_rm_watch(fd, wd);
    while (read(fd, events, sizeof(events)) > 0) {
    }
    pthread_mutex_lock(&inotify_lock);
    if (inotify_spares < INOTIFY_SPARES) {
        inotify_spare[inotify_spares++] = fd;
        fd = -1;
    }
    pthread_mutex_unlock(&inotify_lock);
    if (fd >= 0)
        close(fd);
}
