// C shims for Tricolor. Only what Swift cannot do cheaply or at all:
// atomics on raw memory (heap words, bitmaps), the thread-local "current mutator"
// pointer and the hook that detaches it when its thread exits, thread stack bounds,
// thread names, CPU counts, a monotonic clock, and the frame-pointer walk the profilers
// use to record call stacks.
#ifndef CTRICOLOR_H
#define CTRICOLOR_H

#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>

#define TC_INLINE static inline __attribute__((always_inline))

// ---- atomics on raw memory; the ordering is in the name ----
TC_INLINE uintptr_t tc_load_relaxed(const void *p) { return __atomic_load_n((const uintptr_t *)p, __ATOMIC_RELAXED); }
TC_INLINE uintptr_t tc_load_acquire(const void *p) { return __atomic_load_n((const uintptr_t *)p, __ATOMIC_ACQUIRE); }
TC_INLINE void tc_store_relaxed(void *p, uintptr_t v) { __atomic_store_n((uintptr_t *)p, v, __ATOMIC_RELAXED); }
TC_INLINE void tc_store_release(void *p, uintptr_t v) { __atomic_store_n((uintptr_t *)p, v, __ATOMIC_RELEASE); }
TC_INLINE bool tc_cas(void *p, uintptr_t expected, uintptr_t desired) {
    return __atomic_compare_exchange_n((uintptr_t *)p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
TC_INLINE uintptr_t tc_fetch_add(void *p, uintptr_t v) { return __atomic_fetch_add((uintptr_t *)p, v, __ATOMIC_ACQ_REL); }
TC_INLINE uintptr_t tc_fetch_add_relaxed(void *p, uintptr_t v) { return __atomic_fetch_add((uintptr_t *)p, v, __ATOMIC_RELAXED); }
TC_INLINE uint32_t tc_load32_acquire(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }
TC_INLINE void tc_store32_release(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }
TC_INLINE bool tc_cas32(void *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n((uint32_t *)p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
TC_INLINE uint64_t tc_or64(void *p, uint64_t v) { return __atomic_fetch_or((uint64_t *)p, v, __ATOMIC_ACQ_REL); }
TC_INLINE uint64_t tc_load64_relaxed(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED); }
TC_INLINE uint64_t tc_and64(void *p, uint64_t v) { return __atomic_fetch_and((uint64_t *)p, v, __ATOMIC_ACQ_REL); }
TC_INLINE uint16_t tc_load16_relaxed(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED); }
TC_INLINE void tc_store16_relaxed(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED); }
TC_INLINE uint8_t tc_load8_relaxed(const void *p) { return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED); }
TC_INLINE void tc_store8_relaxed(void *p, uint8_t v) { __atomic_store_n((uint8_t *)p, v, __ATOMIC_RELAXED); }
TC_INLINE uint8_t tc_or8(void *p, uint8_t v) { return __atomic_fetch_or((uint8_t *)p, v, __ATOMIC_SEQ_CST); }
TC_INLINE uint8_t tc_and8(void *p, uint8_t v) { return __atomic_fetch_and((uint8_t *)p, v, __ATOMIC_SEQ_CST); }

TC_INLINE void tc_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/* Spin-wait hint. */
TC_INLINE void tc_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
/* Prefetch for writing (prefetchw where the CPU has it). */
TC_INLINE void tc_prefetchw(const void *p) { __builtin_prefetch(p, 1, 3); }

// CPU time-stamp counter (Go's cputicks): cheap, for latency histograms; convert to ns
// with a rate measured against tc_nanotime.
TC_INLINE uint64_t tc_cputicks(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    return 0;
#endif
}

// ---- the mutator attached to this thread (a __thread variable; local-exec TLS) ----
extern __thread void *tc_current_mutator;
TC_INLINE void *tc_get_current_mutator(void) { return tc_current_mutator; }
TC_INLINE void tc_set_current_mutator(void *m) { tc_current_mutator = m; }
// Set by a collector thread around the release that ends its pin on the heap
// (Heap.collectorUnit): the one place where that thread may run the heap's deinit.
extern __thread int tc_collector_unpinning;
TC_INLINE int tc_get_collector_unpinning(void) { return tc_collector_unpinning; }
TC_INLINE void tc_set_collector_unpinning(int v) { tc_collector_unpinning = v; }

// ---- thread exit (Go's goexit dropping its P) ----
// A thread that ends while attached must not stay listed as a mutator: stop-the-world
// and mark termination would wait for it forever. attach() calls
// tc_watch_thread_exit(mutator, fn); if the thread then exits before detach()
// (tc_watch_thread_exit(NULL, fn)), a pthread key destructor calls fn(mutator) on the
// exiting thread, while its thread-locals (tc_current_mutator among them) still hold.
// One key for the process, created on first use. 0, or the errno of pthread_key_create
// or pthread_setspecific.
typedef void (*tc_thread_exit_fn)(void *mutator);
int tc_watch_thread_exit(void *mutator, tc_thread_exit_fn fn);

// ---- threads ----
uint64_t tc_thread_id(void);                         // gettid()
/// realloc for a block referenced only from mmap'ed runtime metadata: LeakSanitizer
/// (when linked in) is told not to report it. Free it with free().
void *tc_untracked_realloc(void *p, size_t n);
int tc_set_thread_batch(void);                        // SCHED_BATCH for the calling thread; 0 or errno
bool tc_thread_exists(uint64_t tid);                 // a thread of this process with that id exists
int tc_signal_thread(uint64_t tid, int sig);          // tgkill: 0, or -1 with errno
int tc_thread_name(char *buf, size_t n);             // the calling thread's name (pthread_getname_np)
int tc_usable_cpus(void);                            // CPUs this thread may run on (sched_getaffinity), >= 1
int tc_thread_stack_bounds(uintptr_t *lo, uintptr_t *hi);   // 0, or the pthread error
// Tests: nonzero makes tc_thread_stack_bounds fail with this error (a fault seam).
void tc_set_fake_stack_bounds_error(int err);
int tc_set_thread_name(const char *name);
uint64_t tc_nanotime(void);                          // CLOCK_MONOTONIC
uint64_t tc_walltime_ns(void);                       // CLOCK_REALTIME
uint64_t tc_thread_cputime_ns(void);                 // CLOCK_THREAD_CPUTIME_ID
int tc_ncpu(void);                                   // online CPUs
void tc_yield(void);                                 // sched_yield
void tc_sleep_ns(uint64_t ns);

// ---- conservative scanning of native stacks (Boehm GC's GC_push_regs, Go's scanConservative) ----
// tc_spill_registers stores the calling thread's callee-saved registers (x86_64: rbx,
// rbp, r12-r15; aarch64: x19-x29, lr) into buf (TC_SPILL_WORDS words, in the caller's
// frame) and returns the caller's stack pointer: every value live in the caller or its
// callers is then at an address >= that pointer, on the stack or in buf. Written in
// assembly so that no prologue clobbers a register before it is stored.
#define TC_SPILL_WORDS 16
uintptr_t tc_spill_registers(uintptr_t *buf);
// The calling thread's stack top (highest address + 1), cached per thread; 0 if unknown
// (tc_thread_stack_bounds failed: call it for the error). lo receives the lowest
// address. Same cache as tc_callers.
uintptr_t tc_thread_stack_top(uintptr_t *lo);
// Copy into out[] (at most cap) the 8-byte-aligned words of [lo, hi) whose value v has
// min <= v < max, starting at *cursor, which is advanced past the last word read.
// Reads memory another thread may be writing (a blocked mutator's frames) or that a
// sanitizer has poisoned (stack redzones), so it is not instrumented.
size_t tc_scan_words(uintptr_t *cursor, uintptr_t hi, uintptr_t min, uintptr_t max, uintptr_t *out, size_t cap);
// A load the thread sanitizer does not see: for the conservative scanner's reads of a
// span's allocation state, which may race with a refill (a race whose outcomes are all
// safe; see Collector/ConservativeScan.swift).
uint64_t tc_peek64(const void *p);
// A function the optimiser cannot see into, which may read and write *p (tests: make a
// value exist in memory at the call).
void tc_compiler_use(void *p);

// ---- call stacks (profilers) ----
// Walks the frame-pointer chain of the calling thread and stores up to `max` return
// addresses in `buf`, innermost first; returns how many it stored. Entry 0 (with
// skip == 0) is the return address into the function that called tc_callers; `skip`
// drops that many entries first. Never faults: the walk stays inside this thread's
// stack (bounds cached per thread on first use) and stops at the first frame pointer
// that is not 8-byte aligned and strictly above the previous one, or at a zero return
// address. Returns 0 when called on a stack other than the thread's own (a signal
// alternate stack). x86_64 and aarch64 frame records: [fp] = caller's fp, [fp+8] = return address.
__attribute__((noinline)) size_t tc_callers(size_t skip, uintptr_t *buf, size_t max);
uintptr_t tc_executable_phdr(void);                 // getauxval(AT_PHDR): an address inside the main executable

// ---- mutex + condition variable living in raw memory ----
typedef struct tc_lock tc_lock;
size_t tc_lock_size(void);
void tc_lock_init(tc_lock *l);
void tc_lock_destroy(tc_lock *l);
void tc_lock_acquire(tc_lock *l);
bool tc_lock_try(tc_lock *l);
void tc_lock_release(tc_lock *l);
typedef struct tc_cond tc_cond;
size_t tc_cond_size(void);
void tc_cond_init(tc_cond *c);
void tc_cond_destroy(tc_cond *c);
void tc_cond_wait(tc_cond *c, tc_lock *l);
void tc_cond_broadcast(tc_cond *c);
int tc_cond_timedwait_ns(tc_cond *c, tc_lock *l, uint64_t ns);   // 0, or ETIMEDOUT

#define TC_CPU_MASK_BYTES 128   // sizeof(cpu_set_t)
int tc_pull_thread_here(uint64_t tid, void *saved);   // 0 on success; saves the old mask
int tc_restore_affinity(uint64_t tid, const void *saved);   // 0, or errno (falls back to the caller's mask on EINVAL)
int tc_current_affinity(void *mask);                  // the calling thread's mask (tests)

// ---- OS memory ----

// ---- the debug descriptor (Observability/DebugDescriptor.swift; tools/gdb/tricolor-gdb.py) ----
// A small, stable, C-visible description of the live heaps for debuggers: gdb's
// extension finds `tricolor_debug_descriptor` by symbol and reads everything else
// through it, in a live process or a core file, without understanding Swift types.
// Every word is 64 bits; names are NUL-terminated in fixed 48-byte fields. Swift fills
// the layout table (`fields`: byte offsets of MSpan, MutatorState, MCache, ... fields,
// and constants) once, at the first heap's creation, and each heap's slot at its
// creation; a heap clears its slot when it is freed. Version 1.
#define TC_DEBUG_VERSION 1
#define TC_DEBUG_MAX_HEAPS 16
#define TC_DEBUG_NAME_BYTES 48
typedef struct tc_debug_field {
    char name[TC_DEBUG_NAME_BYTES];
    uint64_t value;
} tc_debug_field;
typedef struct tc_debug_heap {
    uint64_t heap;          // the Heap object (opaque); 0: a free slot
    uint64_t fields;        // tc_debug_field[field_count]: this heap's addresses and settings
    uint64_t field_count;
    uint64_t mutators;      // the first attached MutatorState (mirrored under the sched lock)
    uint64_t type_names;    // const char *[type_count]: registry index -> name (types lock)
    uint64_t type_count;
} tc_debug_heap;
typedef struct tc_debug_descriptor {
    char magic[16];         // "tricolor-debug"
    uint64_t version;       // TC_DEBUG_VERSION
    uint64_t max_heaps;     // TC_DEBUG_MAX_HEAPS
    uint64_t fields;        // tc_debug_field[field_count]: layout offsets and constants
    uint64_t field_count;
    tc_debug_heap heaps[TC_DEBUG_MAX_HEAPS];
} tc_debug_descriptor;
// A span's lifecycle specials as a debugger reads them (MSpan.debugSpecials, an array of
// MSpan.debugSpecialCount records, malloc'd): a copy of the span's list in the Swift
// specials table (Runtime/Specials.swift), in its order (by addr, then kind), rewritten
// under the specials lock whenever the list changes. kind: 1 finalizer, 2 weak handle,
// 3 cleanup, 4 Swift object box, 5 heap-profile sample.
typedef struct tc_debug_special {
    uint64_t addr;          // start of the object
    uint64_t kind;
    uint64_t id;            // cleanup: its id; 0 otherwise
    uint64_t arg;           // weak handle: the handle object; cleanup: its argument; profile: bucket
} tc_debug_special;
// A shadow-stack frame as checked mode records it (MutatorState.debugFrames, an array of
// MutatorState.debugFrameCount records, outermost first, malloc'd): written by the
// mutator's own thread when it pushes (records) or pops (drops) a frame.
typedef struct tc_debug_frame {
    uint64_t offset;        // first slot of the frame in the shadow stack
    uint64_t slots;         // slots in the frame
} tc_debug_frame;
extern tc_debug_descriptor tricolor_debug_descriptor;
/* The descriptor's address (Swift cannot take the address of a C global cheaply). */
tc_debug_descriptor *tc_debug(void);

#endif
