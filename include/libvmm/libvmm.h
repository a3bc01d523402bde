/*
 * libvmm: create, start, stop and delete Firecracker microVMs.
 *
 * This umbrella header includes every public header of the library.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_H
#define LIBVMM_H

#include <libvmm/common.h>
#include <libvmm/version.h>
#include <libvmm/error.h>
#include <libvmm/context.h>
#include <libvmm/vm.h>

#endif /* LIBVMM_H */
