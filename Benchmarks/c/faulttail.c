// The first-touch page-fault tail of this machine, with no runtime involved: the floor
// under the growth benchmark's p99.99 (`tricolor bench growth`, Benchmarks/go/growth).
//
// Maps 600 MiB of fresh anonymous memory (no huge pages, as the heap gets) and faults it
// in 8 KiB at a time, the piece a Tricolor mutator faults in when it finds no free page,
// timing each piece: with MADV_POPULATE_WRITE (what Tricolor does) or with a plain write
// to each 4 KiB page (what a Go goroutine's first store does). Prints p50, p99, p99.9,
// p99.99 and the worst piece in ns, and how many pieces took over 40 µs.
//
//   gcc -O2 -o faulttail Benchmarks/c/faulttail.c && ./faulttail populate && ./faulttail write
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "populate") != 0 && strcmp(argv[1], "write") != 0)) {
        fprintf(stderr, "usage: %s populate|write\n", argv[0]);
        return 2;
    }
    int populate = strcmp(argv[1], "populate") == 0;
    size_t total = 600ul << 20, piece = 8192, n = total / piece;
    char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    if (madvise(p, total, MADV_NOHUGEPAGE) != 0) { perror("madvise(MADV_NOHUGEPAGE)"); return 1; }
    long long *t = malloc(n * sizeof *t);
    if (t == NULL) { perror("malloc"); return 1; }
    for (size_t i = 0; i < n; i++) {
        char *q = p + i * piece;
        long long start = now_ns();
        if (populate) {
            if (madvise(q, piece, MADV_POPULATE_WRITE) != 0) { perror("madvise(MADV_POPULATE_WRITE)"); return 1; }
        } else {
            ((volatile char *)q)[0] = 1;
            ((volatile char *)q)[4096] = 1;
        }
        t[i] = now_ns() - start;
    }
    qsort(t, n, sizeof *t, cmp);
    size_t over = 0;
    for (size_t i = 0; i < n; i++) over += t[i] > 40000;
    printf("faulttail mode=%s pieces=%zu p50_ns=%lld p99_ns=%lld p999_ns=%lld p9999_ns=%lld max_ns=%lld over_40us=%zu\n",
           argv[1], n, t[n / 2], t[n * 99 / 100], t[n * 999 / 1000], t[n * 9999 / 10000], t[n - 1], over);
    return 0;
}
