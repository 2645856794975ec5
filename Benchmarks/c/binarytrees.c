/* Benchmarks Game "binary-trees", C, malloc/free, single-threaded.
 * stdout is byte-for-byte the Benchmarks Game reference output.
 * Build: gcc -O2 -o out/c-binarytrees c/binarytrees.c
 */
#include <stdio.h>
#include <stdlib.h>

typedef struct Node {
    struct Node *left, *right;
} Node;

static Node *new_node(Node *left, Node *right) {
    Node *n = malloc(sizeof *n);
    if (!n) { perror("malloc"); exit(1); }
    n->left = left;
    n->right = right;
    return n;
}

static Node *bottom_up_tree(int depth) {
    if (depth <= 0) return new_node(NULL, NULL);
    Node *l = bottom_up_tree(depth - 1);
    Node *r = bottom_up_tree(depth - 1);
    return new_node(l, r);
}

/* check = 1 + check(left) + check(right): the node count. */
static long check(const Node *n) {
    if (!n->left) return 1;
    return 1 + check(n->left) + check(n->right);
}

static void delete_tree(Node *n) {
    if (n->left) {
        delete_tree(n->left);
        delete_tree(n->right);
    }
    free(n);
}

int main(int argc, char **argv) {
    const int min_depth = 4;
    int n = argc > 1 ? atoi(argv[1]) : 0;
    int max_depth = n < min_depth + 2 ? min_depth + 2 : n;

    {
        int stretch_depth = max_depth + 1;
        Node *t = bottom_up_tree(stretch_depth);
        printf("stretch tree of depth %d\t check: %ld\n", stretch_depth, check(t));
        delete_tree(t);
    }

    Node *long_lived = bottom_up_tree(max_depth);

    for (int d = min_depth; d <= max_depth; d += 2) {
        long iterations = 1L << (max_depth - d + min_depth);
        long sum = 0;
        for (long i = 0; i < iterations; i++) {
            Node *t = bottom_up_tree(d);
            sum += check(t);
            delete_tree(t);
        }
        printf("%ld\t trees of depth %d\t check: %ld\n", iterations, d, sum);
    }

    printf("long lived tree of depth %d\t check: %ld\n", max_depth, check(long_lived));
    delete_tree(long_lived);
    return 0;
}
