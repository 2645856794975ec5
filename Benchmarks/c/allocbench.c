// The allocation microbenchmark of `tricolor bench alloc`, in C with mimalloc, for the
// comparison in BENCHMARKS.md: 16-byte blocks, median of 7 runs of 10 M allocations.
//  - bulk: 10 M blocks into a fresh mi_heap, then mi_heap_destroy (everything freed at
//    once: the analogue of the "no GC" case, where a collection frees all of them);
//  - steady: a ring of 4 MiB of live blocks, each new block freeing the oldest (the
//    analogue of the "with GC" case). Each also with mi_zalloc: Tricolor hands out
//    zeroed memory.
//  - floor: no allocator at all. Clear 160 MB (10 M × 16 B) of memory that is already
//    faulted in and dirty, 8 KiB at a time, as the bulk case's span refills must when
//    they reuse the pages the previous run's collection freed: the cost of zeroing alone,
//    set by memory bandwidth once the 160 MB no longer fit in any cache.
//
//   gcc -O2 -o allocbench Benchmarks/c/allocbench.c -lmimalloc && ./allocbench && ./allocbench zero && ./allocbench floor
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    long n = 10000000; int runs = 7; int zero = argc > 1 && strcmp(argv[1], "zero") == 0;
    double t[7]; unsigned long sink = 0;
    if (argc > 1 && strcmp(argv[1], "floor") == 0) {
        size_t bytes = (size_t)n * 16;
        char *b = malloc(bytes);
        if (!b) { perror("malloc"); return 1; }
        memset(b, 1, bytes);  // faulted in and dirty, as pages a collection freed
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            for (size_t o = 0; o < bytes; o += 8192) memset(b + o, 0, 8192);
            t[r] = (now() - t0) * 1e9 / n;
            memset(b, r + 2, bytes);  // dirty again, and out of the caches
            for (size_t o = 0; o < bytes; o += 4096) sink += (unsigned char)b[o];
        }
        qsort(t, runs, sizeof t[0], cmp);
        printf("zeroing 160 MB of dirty memory in 8 KiB pieces: median %.2f ns per 16 B (min %.2f, max %.2f)\n", t[runs/2], t[0], t[runs-1]);
        free(b);
        if (sink == 1) puts("");
        return 0;
    }
    for (int r = 0; r < runs; r++) {
        mi_heap_t *h = mi_heap_new();
        double t0 = now();
        for (long i = 0; i < n; i++) { void *p = zero ? mi_heap_zalloc(h, 16) : mi_heap_malloc(h, 16); sink += (unsigned long)p; }
        t[r] = (now() - t0) * 1e9 / n;
        mi_heap_destroy(h);
    }
    qsort(t, runs, sizeof t[0], cmp);
    printf("mimalloc %s 16 B, bulk free: median %.2f ns/object (min %.2f, max %.2f)\n", zero ? "zalloc" : "malloc", t[runs/2], t[0], t[runs-1]);
    long ring = 4 << 20 >> 4;  // 4 MiB of live blocks, like the GC case's heap
    void **live = calloc(ring, sizeof(void *));
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (long i = 0; i < n; i++) { long k = i % ring; if (live[k]) mi_free(live[k]); live[k] = zero ? mi_zalloc(16) : mi_malloc(16); }
        t[r] = (now() - t0) * 1e9 / n;
    }
    qsort(t, runs, sizeof t[0], cmp);
    printf("mimalloc %s 16 B + free of one 4 MiB older: median %.2f ns/object pair (min %.2f, max %.2f)\n", zero ? "zalloc" : "malloc", t[runs/2], t[0], t[runs-1]);
    for (long k = 0; k < ring; k++) mi_free(live[k]);
    free(live);
    if (sink == 1) puts("");  // keep the allocations
    return 0;
}
