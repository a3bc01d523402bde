/*
 * libvmm: definitions shared by every public header.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_COMMON_H
#define LIBVMM_COMMON_H

#include <stddef.h>
#include <stdint.h>

/*
 * VMM_EXPORT marks the symbols of the public API. The library is built with
 * hidden visibility, so everything else stays internal.
 */
#if defined(LIBVMM_BUILDING) && defined(__GNUC__)
#define VMM_EXPORT __attribute__((visibility("default")))
#else
#define VMM_EXPORT
#endif

#ifdef __cplusplus
#define VMM_BEGIN_DECLS extern "C" {
#define VMM_END_DECLS }
#else
#define VMM_BEGIN_DECLS
#define VMM_END_DECLS
#endif

#endif /* LIBVMM_COMMON_H */
