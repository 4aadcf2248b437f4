/* LD_PRELOAD shim for the two-process tests (tests/integration/test_distributed.py): every GIL acquisition by a
   thread other than the process's main thread waits LATE_GIL_MS (default 100) first, as a thread that the
   scheduler runs late on a loaded machine does. It makes the race behind the two-process abort certain instead of
   rare: a gloo worker thread that takes the GIL to release a finished collective's tensor after the interpreter
   has begun finalizing aborts the process (docs/RELIABILITY.md, "Two-process abort"). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void late(void) {
    if (syscall(SYS_gettid) == getpid()) return;
    const char *ms = getenv("LATE_GIL_MS");
    long n = ms ? atol(ms) : 100;
    struct timespec t = {n / 1000, (n % 1000) * 1000000L};
    nanosleep(&t, NULL);
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
