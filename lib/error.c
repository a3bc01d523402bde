/*
 * The per-thread last-error record.
 *
 * The record lives in fixed thread-local buffers so that a failing
 * allocation can still be reported, and so that the pointer handed out by
 * vmm_error_last() stays valid without the caller freeing anything.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Sizes match struct error_snapshot in internal.h. */
#define MESSAGE_MAX 1024
#define FAULT_MAX 1024

struct error_state {
    vmm_error pub;
    char message[MESSAGE_MAX];
    char fault[FAULT_MAX];
};

static _Thread_local struct error_state last;

void error_reset(void)
{
    last.pub.code = 0;
    last.pub.os_error = 0;
    last.pub.http_status = 0;
    last.pub.fault_message = NULL;
    last.message[0] = '\0';
}

/*
 * Messages are one line: a program tail quoted into one (e2fsck's, a VMM
 * log's) has its line breaks turned into " | " and its trailing blanks
 * dropped.
 */
static void one_line(char *msg, size_t size)
{
    char *end = msg + strlen(msg);

    while (end > msg && (end[-1] == '\n' || end[-1] == ' ' ||
                         end[-1] == '\r' || end[-1] == '\t'))
        *--end = '\0';
    for (char *p = msg; *p != '\0'; p++) {
        size_t len;

        if (*p != '\n')
            continue;
        len = strlen(p + 1);
        if ((size_t)(p - msg) + 3 + len + 1 > size) {
            *p = ' ';
            continue;
        }
        memmove(p + 3, p + 1, len + 1);
        memcpy(p, " | ", 3);
        p += 2;
    }
}

static void set_message(const char *fmt, va_list ap)
{
    vsnprintf(last.message, sizeof(last.message), fmt, ap);
    one_line(last.message, sizeof(last.message));
}

int error_set(int code, const char *fmt, ...)
{
    va_list ap;

    error_reset();
    last.pub.code = code;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
    return code;
}

int error_set_os(int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    size_t len;

    error_reset();
    last.pub.code = code;
    last.pub.os_error = errnum;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);

    len = strlen(last.message);
    if (errnum != 0 && len < sizeof(last.message))
        snprintf(last.message + len, sizeof(last.message) - len, ": %s",
                 strerror(errnum));
    return code;
}

int error_set_api(int http_status, const char *fault, const char *fmt, ...)
{
    va_list ap;
    size_t len;

    error_reset();
    last.pub.code = VMM_EAPI;
    last.pub.http_status = http_status;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);

    if (fault == NULL)
        return VMM_EAPI;
    snprintf(last.fault, sizeof(last.fault), "%s", fault);
    last.pub.fault_message = last.fault;
    len = strlen(last.message);
    if (len < sizeof(last.message))
        snprintf(last.message + len, sizeof(last.message) - len, ": %s",
                 fault);
    one_line(last.message, sizeof(last.message));
    return VMM_EAPI;
}

void error_prefix(const char *fmt, ...)
{
    char old[MESSAGE_MAX];
    va_list ap;
    int len;

    memcpy(old, last.message, sizeof(old));
    va_start(ap, fmt);
    len = vsnprintf(last.message, sizeof(last.message), fmt, ap);
    va_end(ap);
    if (len >= 0 && (size_t)len < sizeof(last.message))
        snprintf(last.message + len, sizeof(last.message) - len, "%s", old);
}

void error_save(struct error_snapshot *s)
{
    s->pub = last.pub;
    s->has_fault = last.pub.fault_message != NULL;
    memcpy(s->message, last.message, sizeof(s->message));
    memcpy(s->fault, last.fault, sizeof(s->fault));
}

void error_restore(const struct error_snapshot *s)
{
    last.pub = s->pub;
    memcpy(last.message, s->message, sizeof(last.message));
    memcpy(last.fault, s->fault, sizeof(last.fault));
    last.pub.fault_message = s->has_fault ? last.fault : NULL;
}

int error_code(void)
{
    return last.pub.code;
}

VMM_EXPORT const vmm_error *vmm_error_last(void)
{
    /* Not reset here: reading the record must not clear it. */
    last.pub.message = last.message;
    return &last.pub;
}

VMM_EXPORT const char *vmm_strerror(int32_t code)
{
    switch (code) {
    case VMM_OK: return "success";
    case VMM_EINVAL: return "invalid argument";
    case VMM_ENOMEM: return "out of memory";
    case VMM_ENOTFOUND: return "not found";
    case VMM_EEXIST: return "already exists";
    case VMM_EBUSY: return "busy";
    case VMM_ESTATE: return "not allowed in the current state";
    case VMM_EIO: return "system call failed";
    case VMM_EAPI: return "Firecracker API request refused";
    case VMM_ETIMEDOUT: return "timed out";
    case VMM_EPROCESS: return "VMM process failed";
    case VMM_EDISK: return "disk unusable";
    case VMM_ENET: return "network setup failed";
    case VMM_EUNSUPPORTED: return "not supported on this host";
    case VMM_ECORRUPT: return "state record corrupt";
    default: return "unknown error";
    }
}
