// Helpers for the fuzz driver that Swift cannot express. See exit.c.
#ifndef CFUZZSUPPORT_H
#define CFUZZSUPPORT_H

/// Nonzero (the default): a call of `_exit` with a nonzero status aborts instead, so that
/// libFuzzer's deadly-signal handler saves the input. Set to 0 to let `_exit` through.
extern int tcfuzz_trap_exit;

#endif
