// Benchmarks Game "binary-trees", Java, single-threaded (the comparison for issue #14:
// Java 17 with -XX:+UseSerialGC). stdout is the reference output.
// Build and run: javac -d .build/java Benchmarks/java/BinaryTrees.java && java -XX:+UseSerialGC -cp .build/java BinaryTrees 21
public final class BinaryTrees {
    static final class Node {
        final Node left, right;
        Node(Node l, Node r) { left = l; right = r; }
        int check() { return left == null ? 1 : 1 + left.check() + right.check(); }
    }

    static Node bottomUp(int depth) {
        return depth > 0 ? new Node(bottomUp(depth - 1), bottomUp(depth - 1)) : new Node(null, null);
    }

    public static void main(String[] args) {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 10;
        int minDepth = 4;
        int maxDepth = Math.max(minDepth + 2, n);
        int stretch = maxDepth + 1;
        System.out.println("stretch tree of depth " + stretch + "\t check: " + bottomUp(stretch).check());
        Node longLived = bottomUp(maxDepth);
        StringBuilder out = new StringBuilder();
        for (int d = minDepth; d <= maxDepth; d += 2) {
            int iterations = 1 << (maxDepth - d + minDepth);
            long check = 0;
            for (int i = 0; i < iterations; i++) check += bottomUp(d).check();
            out.append(iterations).append("\t trees of depth ").append(d).append("\t check: ").append(check).append('\n');
        }
        System.out.print(out);
        System.out.println("long lived tree of depth " + maxDepth + "\t check: " + longLived.check());
    }
}
