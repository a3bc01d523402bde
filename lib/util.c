/*
 * Small helpers shared by the modules.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

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
