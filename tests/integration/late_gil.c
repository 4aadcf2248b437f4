/* LD_PRELOAD shim for the two-process test (tests/integration/test_distributed.py). Once armed, a thread other than
   the process's main thread that asks for the GIL first waits until the interpreter begins finalizing (or the
   armed number of milliseconds pass): the worst a loaded machine's scheduler can do to it. That turns the race
   behind the two-process abort from rare into certain: a gloo worker thread that takes the GIL to release a
   finished collective's tensor once the interpreter is finalizing aborts the process (docs/RELIABILITY.md,
   "Two-process abort"). Armed from Python with ctypes.CDLL(None).late_gil_arm(ms), or for the whole run with
   LATE_GIL_MS in the environment. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile long armed_ms = -1; /* -1: LATE_GIL_MS not read yet; 0: off */

void late_gil_arm(long ms) { armed_ms = ms; }

static int finalizing(void) {
    static int (*is_finalizing)(void) = NULL;
    if (!is_finalizing) is_finalizing = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
    if (!is_finalizing) is_finalizing = (int (*)(void))dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    return is_finalizing ? is_finalizing() : 0;
}

static void late(void) {
    if (armed_ms < 0) {
        const char *env = getenv("LATE_GIL_MS");
        armed_ms = env ? atol(env) : 0;
    }
    if (armed_ms <= 0 || syscall(SYS_gettid) == getpid()) return;
    struct timespec tick = {0, 1000000L};
    for (long waited = 0; waited < armed_ms && !finalizing(); waited++) nanosleep(&tick, NULL);
}

void PyEval_AcquireThread(void *tstate) {
    static void (*real)(void *) = NULL;
    if (!real) real = (void (*)(void *))dlsym(RTLD_NEXT, "PyEval_AcquireThread");
    late();
    real(tstate);
}

int PyGILState_Ensure(void) {
    static int (*real)(void) = NULL;
    if (!real) real = (int (*)(void))dlsym(RTLD_NEXT, "PyGILState_Ensure");
    late();
    return real();
}
