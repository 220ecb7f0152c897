/* The C ABI links and reports the crate version. */
#include <stdio.h>
#include <string.h>

#include "battery_fl.h"

int main(void) {
    const char *v = bfl_version();
    if (v == NULL) {
        fprintf(stderr, "bfl_version returned NULL\n");
        return 1;
    }
    if (strcmp(v, EXPECTED_VERSION) != 0) {
        fprintf(stderr, "bfl_version: got '%s', expected '%s'\n", v, EXPECTED_VERSION);
        return 1;
    }
    printf("1 passed, 0 failed: bfl_version() = %s\n", v);
    return 0;
}
