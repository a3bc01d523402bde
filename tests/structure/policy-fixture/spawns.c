/* A fixture for the process policy test: a module that must not spawn. */
#include <stdlib.h>

int helper(void)
{
    return system("true");
}
