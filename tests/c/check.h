/* Minimal test helpers shared by the C tests: CHECK counts failures and keeps going. */
#ifndef BFL_TEST_CHECK_H
#define BFL_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "battery_fl.h"

static int checks_run = 0;
static int checks_failed = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        checks_run++;                                                            \
        if (!(cond)) {                                                           \
            checks_failed++;                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

/* A call that must succeed; prints the library's message otherwise. */
#define OK(call)                                                                 \
    do {                                                                         \
        bfl_status ok_status_ = (call);                                          \
        checks_run++;                                                            \
        if (ok_status_ != BFL_STATUS_OK) {                                       \
            char ok_msg_[512];                                                   \
            bfl_last_error_message(ok_msg_, sizeof ok_msg_);                     \
            checks_failed++;                                                     \
            fprintf(stderr, "%s:%d: %s -> %d (%s): %s\n", __FILE__, __LINE__,   \
                    #call, (int)ok_status_, bfl_status_str((int)ok_status_), ok_msg_); \
        }                                                                        \
    } while (0)

/* A call that must fail with `expected`, leaving a non-empty last-error message. */
#define FAILS(expected, call)                                                    \
    do {                                                                         \
        bfl_status got_status_ = (call);                                         \
        checks_run++;                                                            \
        if (got_status_ != (expected)) {                                         \
            checks_failed++;                                                     \
            fprintf(stderr, "%s:%d: %s -> %d, expected %d (%s)\n", __FILE__,     \
                    __LINE__, #call, (int)got_status_, (int)(expected), #expected); \
        } else {                                                                 \
            char fails_msg_[512];                                                \
            CHECK(bfl_last_error_message(fails_msg_, sizeof fails_msg_) > 0);    \
        }                                                                        \
    } while (0)

#define CLOSE(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol))

static int report(const char *name) {
    printf("%s: %d checks, %d failed\n", name, checks_run, checks_failed);
    return checks_failed == 0 ? 0 : 1;
}

#endif
