/* Hans Boehm's GCBench, C with malloc/free (the non-GC configuration of
 * GCBench.c): every temporary tree is freed explicitly as soon as it dies,
 * as the C reference comparisons do.
 *
 *   kStretchTreeDepth 18, kLongLivedTreeDepth 16, kArraySize 500000 doubles,
 *   depths 4..16 step 2, NumIters(d) = 2*TreeSize(18)/TreeSize(d),
 *   top-down (Populate) and bottom-up (MakeTree) construction per depth.
 *
 * Output: the classic GCBench.c lines ("Completed in N msec" is the summary),
 * then one machine-readable line starting with '#'.
 * Build: gcc -O2 -o out/c-gcbench c/gcbench.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct Node0_struct {
    struct Node0_struct *left;
    struct Node0_struct *right;
    int i, j;
} Node0;
typedef Node0 *Node;

static const int kStretchTreeDepth = 18;
static const int kLongLivedTreeDepth = 16;
static const int kArraySize = 500000;
static const int kMinTreeDepth = 4;
static const int kMaxTreeDepth = 16;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long elapsed_ms(double start) { return (long)((now_s() - start) * 1000.0); }

static Node new_node0(void) {
    Node n = calloc(1, sizeof(Node0));
    if (!n) { perror("calloc"); exit(1); }
    return n;
}

static Node new_node(Node l, Node r) {
    Node n = malloc(sizeof(Node0));
    if (!n) { perror("malloc"); exit(1); }
    n->left = l;
    n->right = r;
    n->i = n->j = 0;
    return n;
}

static void destroy_node(Node n) {
    if (n->left) destroy_node(n->left);
    if (n->right) destroy_node(n->right);
    free(n);
}

/* Nodes used by a tree of a given size. */
static int TreeSize(int i) { return (1 << (i + 1)) - 1; }

/* Number of iterations to use for a given tree depth. */
static int NumIters(int i) { return 2 * TreeSize(kStretchTreeDepth) / TreeSize(i); }

/* Build tree top down, assigning to older objects. */
static void Populate(int iDepth, Node thisNode) {
    if (iDepth <= 0) return;
    iDepth--;
    thisNode->left = new_node0();
    thisNode->right = new_node0();
    Populate(iDepth, thisNode->left);
    Populate(iDepth, thisNode->right);
}

/* Build tree bottom-up. */
static Node MakeTree(int iDepth) {
    if (iDepth <= 0) return new_node0();
    Node l = MakeTree(iDepth - 1);
    Node r = MakeTree(iDepth - 1);
    return new_node(l, r);
}

static void TimeConstruction(int depth) {
    int iNumIters = NumIters(depth);
    printf("Creating %d trees of depth %d\n", iNumIters, depth);

    double tStart = now_s();
    for (int i = 0; i < iNumIters; ++i) {
        Node tempTree = new_node0();
        Populate(depth, tempTree);
        destroy_node(tempTree);
    }
    printf("\tTop down construction took %ld msec\n", elapsed_ms(tStart));

    tStart = now_s();
    for (int i = 0; i < iNumIters; ++i) {
        Node tempTree = MakeTree(depth);
        destroy_node(tempTree);
    }
    printf("\tBottom up construction took %ld msec\n", elapsed_ms(tStart));
    fflush(stdout);
}

int main(void) {
    printf("Garbage Collector Test\n");
    printf(" Live storage will peak at %lu bytes.\n\n",
           (unsigned long)(2 * sizeof(Node0) * TreeSize(kLongLivedTreeDepth) +
                           sizeof(double) * kArraySize));
    printf(" Stretching memory with a binary tree of depth %d\n", kStretchTreeDepth);
    fflush(stdout);

    double tStart = now_s();

    /* Stretch the memory space quickly. */
    Node tempTree = MakeTree(kStretchTreeDepth);
    destroy_node(tempTree);

    /* Create a long lived object. */
    printf(" Creating a long-lived binary tree of depth %d\n", kLongLivedTreeDepth);
    Node longLivedTree = new_node0();
    Populate(kLongLivedTreeDepth, longLivedTree);

    /* Create long-lived array, filling half of it. */
    printf(" Creating a long-lived array of %d doubles\n", kArraySize);
    double *array = malloc(sizeof(double) * kArraySize);
    if (!array) { perror("malloc"); return 1; }
    for (int i = 0; i < kArraySize / 2; ++i) array[i] = 1.0 / i;
    fflush(stdout);

    for (int d = kMinTreeDepth; d <= kMaxTreeDepth; d += 2) TimeConstruction(d);

    if (longLivedTree == 0 || array[1000] != 1.0 / 1000) printf("Failed\n");

    double wall = now_s() - tStart;
    printf("Completed in %ld msec\n", (long)(wall * 1000.0));
    printf("# impl=c-malloc wall_s=%.3f\n", wall);

    destroy_node(longLivedTree);
    free(array);
    return 0;
}
