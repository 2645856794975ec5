// The inlined allocation fast path of `Mutator.allocate`, written in C with the data in
// registers wherever the compiler can keep it: load the span's 64-slot window, clear
// its lowest set bit, store the window back, store the slot's type id (typed), and
// compute the address. A call the compiler cannot see through refills the window every
// 64 allocations. What this prints is the hardware's cost of that sequence, for
// comparison with the fast path `tricolor bench alloc` reports (BENCHMARKS.md).
//
//   gcc -O2 -march=native -o .build/fastpath Benchmarks/c/fastpath.c && .build/fastpath
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

struct span { uint64_t window; uint64_t base; uint64_t elemSize; uint16_t *typeIDs; };

__attribute__((noinline)) static void refill(struct span *s) { s->window = ~0ull; }

int main(void) {
    static uint16_t ids[64];
    struct span sp = { ~0ull, 1 << 20, 16, ids };
    struct span *volatile hidden = &sp;   // the compiler may not assume where it lives
    struct span *s = hidden;
    const long n = 200000000;
    uint64_t sum = 0;
    for (int typed = 0; typed < 2; typed++) {
        for (int r = 0; r < 3; r++) {
            double t0 = now();
            for (long i = 0; i < n; i++) {
                uint64_t c = s->window;
                if (__builtin_expect(c == 0, 0)) { refill(s); c = s->window; }
                s->window = c & (c - 1);
                int k = __builtin_ctzll(c);
                if (typed) s->typeIDs[k] = 7;
                sum += s->base + (uint64_t)k * s->elemSize;
            }
            printf("%s: %.2f ns per allocation\n", typed ? "typed" : "pointer-free", (now() - t0) * 1e9 / n);
        }
    }
    return sum == 1;  // keep the loop
}
