/*
 * SPDX-License-Identifier: MIT
 */
#include "internal.h"

VMM_EXPORT const char *vmm_version(uint32_t *number)
{
    if (number != NULL)
        *number = VMM_VERSION_NUMBER;
    return VMM_VERSION_STRING;
}
