#define _GNU_SOURCE
#include "ctricolor.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>
#include <sched.h>
#include <errno.h>
#include <sys/auxv.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

// A pthread call that cannot fail with valid arguments failed: the runtime's state is
// not what it believes, so stop with the call's name and error (no Swift runtime is
// needed to report it).
static void tc_pthread_fatal(const char *call, int rc) {
    fprintf(stderr, "fatal error: tricolor: %s failed: %s (error %d)\n", call, strerror(rc), rc);
    abort();
}
// Call a pthread function that returns 0 or an error number; stop on an error.
#define TC_PTHREAD_CHECK(fn, ...) do { int rc_ = fn(__VA_ARGS__); if (rc_ != 0) tc_pthread_fatal(#fn, rc_); } while (0)

__thread void *tc_current_mutator = 0;
__thread int tc_collector_unpinning = 0;

uint64_t tc_thread_id(void) { return (uint64_t)syscall(SYS_gettid); }

// Present only when LeakSanitizer is linked in (ASan, fuzz builds); null otherwise.
extern void __lsan_ignore_object(const void *p) __attribute__((weak));

void *tc_untracked_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    // The only pointer to this block lives in runtime metadata mapped with mmap, which
    // LeakSanitizer does not scan: without this, a heap alive at exit reads as a leak.
    if (q != 0 && __lsan_ignore_object != 0) __lsan_ignore_object(q);
    return q;
}

int tc_set_thread_batch(void) {
    // SCHED_BATCH for the calling thread (pid 0): the normal share of the CPU, but a
    // waking thread does not preempt a running one. Unprivileged threads may switch
    // between SCHED_OTHER and SCHED_BATCH freely (unlike SCHED_IDLE).
    struct sched_param p = { .sched_priority = 0 };
    return sched_setscheduler(0, SCHED_BATCH, &p) == 0 ? 0 : errno;
}

bool tc_thread_exists(uint64_t tid) {
    // Signal 0 checks existence only; ESRCH: no such thread in this thread group.
    return syscall(SYS_tgkill, (pid_t)getpid(), (pid_t)tid, 0) == 0 || errno != ESRCH;
}

int tc_signal_thread(uint64_t tid, int sig) {
    return (int)syscall(SYS_tgkill, (pid_t)getpid(), (pid_t)tid, sig);
}

int tc_thread_name(char *buf, size_t n) { return pthread_getname_np(pthread_self(), buf, n); }

int tc_usable_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        return n < 1 ? 1 : n;
    }
    // More CPUs than a cpu_set_t holds (EINVAL): size the mask to the kernel's.
    for (int ncpu = 2 * CPU_SETSIZE; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *big = CPU_ALLOC(ncpu);
        if (big == 0) break;
        size_t bytes = CPU_ALLOC_SIZE(ncpu);
        if (sched_getaffinity(0, bytes, big) == 0) {
            int n = CPU_COUNT_S(bytes, big);
            CPU_FREE(big);
            return n < 1 ? 1 : n;
        }
        CPU_FREE(big);
        if (errno != EINVAL) break;
    }
    return tc_ncpu();
}

// Thread exit: one pthread key whose value is the mutator attached to the thread (NULL
// when none); its destructor hands that mutator to the function attach registered.
static pthread_key_t tc_exit_key;
static int tc_exit_key_error;
static pthread_once_t tc_exit_once = PTHREAD_ONCE_INIT;
static tc_thread_exit_fn tc_exit_fn;   // the same function on every call; atomic accesses

static void tc_exit_destructor(void *mutator) {
    tc_thread_exit_fn fn = __atomic_load_n(&tc_exit_fn, __ATOMIC_ACQUIRE);
    if (mutator != 0 && fn != 0) fn(mutator);
}

static void tc_exit_key_create(void) { tc_exit_key_error = pthread_key_create(&tc_exit_key, tc_exit_destructor); }

int tc_watch_thread_exit(void *mutator, tc_thread_exit_fn fn) {
    __atomic_store_n(&tc_exit_fn, fn, __ATOMIC_RELEASE);
    pthread_once(&tc_exit_once, tc_exit_key_create);
    if (tc_exit_key_error != 0) return tc_exit_key_error;
    return pthread_setspecific(tc_exit_key, mutator);
}

static int tc_fake_stack_bounds_error = 0;
void tc_set_fake_stack_bounds_error(int err) { __atomic_store_n(&tc_fake_stack_bounds_error, err, __ATOMIC_RELAXED); }

int tc_thread_stack_bounds(uintptr_t *lo, uintptr_t *hi) {
    int fake = __atomic_load_n(&tc_fake_stack_bounds_error, __ATOMIC_RELAXED);
    if (fake != 0) return fake;
    pthread_attr_t attr;
    int rc = pthread_getattr_np(pthread_self(), &attr);
    if (rc != 0) return rc;
    void *addr; size_t size;
    rc = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    if (rc != 0) return rc;
    *lo = (uintptr_t)addr; *hi = (uintptr_t)addr + size;
    return 0;
}

// This thread's stack [lo, hi), filled by the first tc_callers or tc_thread_stack_top
// on the thread. hi == 0: not yet known. Written and read only by the owning thread.
static __thread uintptr_t tc_stack_lo = 0, tc_stack_hi = 0;

uintptr_t tc_thread_stack_top(uintptr_t *lo) {
    if (tc_stack_hi == 0) {
        uintptr_t l, h;
        if (tc_thread_stack_bounds(&l, &h) != 0) { *lo = 0; return 0; }
        tc_stack_lo = l; tc_stack_hi = h;
    }
    *lo = tc_stack_lo;
    return tc_stack_hi;
}

// ---- conservative scanning ----

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl tc_spill_registers\n"
    ".type tc_spill_registers, @function\n"
    "tc_spill_registers:\n"
    "    movq %rbx, 0(%rdi)\n"
    "    movq %rbp, 8(%rdi)\n"
    "    movq %r12, 16(%rdi)\n"
    "    movq %r13, 24(%rdi)\n"
    "    movq %r14, 32(%rdi)\n"
    "    movq %r15, 40(%rdi)\n"
    "    leaq 8(%rsp), %rax\n"          /* the caller's sp: above our return address */
    "    ret\n"
    ".size tc_spill_registers, .-tc_spill_registers\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl tc_spill_registers\n"
    ".type tc_spill_registers, %function\n"
    "tc_spill_registers:\n"
    "    stp x19, x20, [x0, #0]\n"
    "    stp x21, x22, [x0, #16]\n"
    "    stp x23, x24, [x0, #32]\n"
    "    stp x25, x26, [x0, #48]\n"
    "    stp x27, x28, [x0, #64]\n"
    "    stp x29, x30, [x0, #80]\n"
    "    mov x0, sp\n"                    /* bl does not push: sp is the caller's */
    "    ret\n"
    ".size tc_spill_registers, .-tc_spill_registers\n");
#else
#error "tc_spill_registers: port me (store the callee-saved registers, return the caller's sp)"
#endif

__attribute__((no_sanitize("address", "thread")))
size_t tc_scan_words(uintptr_t *cursor, uintptr_t hi, uintptr_t min, uintptr_t max, uintptr_t *out, size_t cap) {
    uintptr_t p = (*cursor + 7) & ~(uintptr_t)7;
    size_t n = 0;
    uintptr_t span = max - min;
    while (p + 8 <= hi && n < cap) {
        uintptr_t v = *(volatile const uintptr_t *)p;
        if (v - min < span) out[n++] = v;
        p += 8;
    }
    *cursor = p;
    return n;
}

__attribute__((noinline)) void tc_compiler_use(void *p) { __asm__ __volatile__("" : : "r"(p) : "memory"); }

__attribute__((no_sanitize("address", "thread")))
uint64_t tc_peek64(const void *p) { return *(volatile const uint64_t *)p; }

__attribute__((noinline)) size_t tc_callers(size_t skip, uintptr_t *buf, size_t max) {
    uintptr_t lo = tc_stack_lo, hi = tc_stack_hi;
    if (__builtin_expect(hi == 0, 0)) {
        // pthread_getattr_np reads /proc/self/maps for the main thread: tens of µs, once.
        if (tc_thread_stack_bounds(&lo, &hi) != 0) return 0;
        tc_stack_lo = lo; tc_stack_hi = hi;
    }
    // __builtin_frame_address forces this function to set up its own frame record,
    // whatever the optimization level, so [fp+8] is our return address.
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    size_t n = 0;
    while (n < max) {
        if (fp < lo || fp > hi - 2 * sizeof(uintptr_t) || (fp & 7) != 0) break;
        const uintptr_t *frame = (const uintptr_t *)fp;
        uintptr_t ret = frame[1];
        if (ret == 0) break;
        if (skip > 0) skip--; else buf[n++] = ret;
        uintptr_t next = frame[0];
        if (next <= fp) break;   // the chain must grow towards the stack base; also stops at fp == 0
        fp = next;
    }
    return n;
}

uintptr_t tc_executable_phdr(void) { return (uintptr_t)getauxval(AT_PHDR); }

int tc_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }


static uint64_t ts_ns(clockid_t c) { struct timespec ts; clock_gettime(c, &ts); return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec; }
uint64_t tc_nanotime(void) { return ts_ns(CLOCK_MONOTONIC); }
uint64_t tc_walltime_ns(void) { return ts_ns(CLOCK_REALTIME); }
uint64_t tc_thread_cputime_ns(void) { return ts_ns(CLOCK_THREAD_CPUTIME_ID); }
int tc_ncpu(void) { long n = sysconf(_SC_NPROCESSORS_ONLN); return n < 1 ? 1 : (int)n; }
void tc_yield(void) { sched_yield(); }
void tc_sleep_ns(uint64_t ns) { struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) }; nanosleep(&ts, 0); }

struct tc_lock { pthread_mutex_t m; };
size_t tc_lock_size(void) { return sizeof(struct tc_lock); }
// Adaptive mutexes spin briefly before sleeping: runtime critical sections are short
// (a span push or pop, a page-allocator update), so a futex sleep would cost more.
void tc_lock_init(tc_lock *l) {
    pthread_mutexattr_t a;
    TC_PTHREAD_CHECK(pthread_mutexattr_init, &a);
    TC_PTHREAD_CHECK(pthread_mutexattr_settype, &a, PTHREAD_MUTEX_ADAPTIVE_NP);
    TC_PTHREAD_CHECK(pthread_mutex_init, &l->m, &a);
    pthread_mutexattr_destroy(&a);
}
void tc_lock_destroy(tc_lock *l) { pthread_mutex_destroy(&l->m); }
void tc_lock_acquire(tc_lock *l) { pthread_mutex_lock(&l->m); }
bool tc_lock_try(tc_lock *l) { return pthread_mutex_trylock(&l->m) == 0; }
void tc_lock_release(tc_lock *l) { pthread_mutex_unlock(&l->m); }

struct tc_cond { pthread_cond_t c; };
size_t tc_cond_size(void) { return sizeof(struct tc_cond); }
// The condition variables time out on CLOCK_MONOTONIC: a wall clock stepped back (NTP,
// an administrator) must not stretch a timed wait (the scavenger's sleep, the
// stop-the-world watchdog and its check for mutators whose thread is gone).
void tc_cond_init(tc_cond *c) {
    pthread_condattr_t a;
    TC_PTHREAD_CHECK(pthread_condattr_init, &a);
    TC_PTHREAD_CHECK(pthread_condattr_setclock, &a, CLOCK_MONOTONIC);
    TC_PTHREAD_CHECK(pthread_cond_init, &c->c, &a);
    pthread_condattr_destroy(&a);
}
void tc_cond_destroy(tc_cond *c) { pthread_cond_destroy(&c->c); }
void tc_cond_wait(tc_cond *c, tc_lock *l) { pthread_cond_wait(&c->c, &l->m); }
void tc_cond_broadcast(tc_cond *c) { pthread_cond_broadcast(&c->c); }
int tc_cond_timedwait_ns(tc_cond *c, tc_lock *l, uint64_t ns) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    // At most a year: the seconds field cannot overflow.
    if (ns > 365ull * 86400 * 1000000000ull) ns = 365ull * 86400 * 1000000000ull;
    uint64_t t = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(t / 1000000000ull); ts.tv_nsec = (long)(t % 1000000000ull);
    int rc = pthread_cond_timedwait(&c->c, &l->m, &ts);
    if (rc != 0 && rc != ETIMEDOUT) tc_pthread_fatal("pthread_cond_timedwait", rc);
    return rc;
}


#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

// Stop-the-world rescue (see Heap.stopTheWorld): move thread `tid`, runnable but kept off
// its CPU, onto the CPU the caller is about to give up. Its previous CPU mask is saved
// in `saved` (TC_CPU_MASK_BYTES bytes) for tc_restore_affinity. 0 on success.
_Static_assert(sizeof(cpu_set_t) == TC_CPU_MASK_BYTES, "TC_CPU_MASK_BYTES");
int tc_pull_thread_here(uint64_t tid, void *saved) {
    int cpu = sched_getcpu();
    if (cpu < 0) return -1;
    cpu_set_t *old = (cpu_set_t *)saved;
    if (sched_getaffinity((pid_t)tid, sizeof(cpu_set_t), old) != 0) return -1;
    if (!CPU_ISSET(cpu, old)) return -1;   // not allowed there: leave it alone
    cpu_set_t here;
    CPU_ZERO(&here);
    CPU_SET(cpu, &here);
    return sched_setaffinity((pid_t)tid, sizeof(cpu_set_t), &here);
}

int tc_current_affinity(void *mask) {
    return sched_getaffinity(0, sizeof(cpu_set_t), (cpu_set_t *)mask);
}

int tc_restore_affinity(uint64_t tid, const void *saved) {
    if (sched_setaffinity((pid_t)tid, sizeof(cpu_set_t), (const cpu_set_t *)saved) == 0) return 0;
    int err = errno;
    if (err != EINVAL) return err;
    // The saved mask no longer fits the process's CPUs (its cpuset changed while the
    // thread was pinned): give it the calling thread's mask instead, so that it is not
    // left on one CPU.
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof(cpu_set_t), &mine) != 0) return errno;
    return sched_setaffinity((pid_t)tid, sizeof(cpu_set_t), &mine) == 0 ? 0 : errno;
}

// The debug descriptor: see ctricolor.h. `used` keeps it in the binary even though no
// code of the runtime reads it back.
__attribute__((used)) tc_debug_descriptor tricolor_debug_descriptor = {
    .magic = "tricolor-debug",
    .version = TC_DEBUG_VERSION,
    .max_heaps = TC_DEBUG_MAX_HEAPS,
};
tc_debug_descriptor *tc_debug(void) { return &tricolor_debug_descriptor; }

// The gdb extension, embedded for auto-loading (gdb's .debug_gdb_scripts section: a
// byte 4 then the script's name and text as one NUL-terminated string), generated from
// tools/gdb/tricolor-gdb.py by Scripts/embed-gdb-script.py.
#include "gdb_script.inc"
