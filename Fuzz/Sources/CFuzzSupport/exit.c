// The runtime's fatal errors (runtimeFatal: checked-mode misuse, out of memory, a
// checkmark failure) end the process with `_exit(2)`, which bypasses libFuzzer's crash
// handling: no crash-* file would be written and the input would be lost. This
// definition of `_exit` is linked into the fuzzer executable ahead of glibc's, so the
// runtime's call lands here and becomes abort(): libFuzzer sees a deadly signal, prints
// the stack and saves the input. (glibc's own exit() reaches the kernel through an
// internal alias, and libFuzzer exits with _Exit, so neither comes through here.)
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CFuzzSupport.h"

int tcfuzz_trap_exit = 1;

void _exit(int status) {
    if (status != 0 && tcfuzz_trap_exit) {
        static const char msg[] = "tricolor-fuzz: the runtime called _exit with a nonzero status (a fatal error above): aborting so that libFuzzer saves the input\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}
