/*
 * Shared main() of the unit test programs: each program defines
 * suite_make() and this runs it, failing the process on any failure.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>

#include "check-main.h"

int main(void)
{
    SRunner *runner = srunner_create(suite_make());
    int failed;

    srunner_run_all(runner, CK_NORMAL);
    failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
