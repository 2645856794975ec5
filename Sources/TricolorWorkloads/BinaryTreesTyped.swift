import Tricolor

/// The layout of a binary-trees node, declared once for the typed layer: two pointer
/// words, 16 bytes, the same object as `BinaryTrees.layout()`.
public struct TreeNode: HeapObject {
    /// Left child (null in a leaf).
    public var left: Obj<TreeNode>
    /// Right child (null in a leaf).
    public var right: Obj<TreeNode>
}

/// binary-trees written with the typed layer (`Obj<TreeNode>`, `m[n].left`): the same
/// rules, output and allocation as `BinaryTrees`, for comparing typed with raw access.
public enum BinaryTreesTyped {
    /// Build a tree of `depth` (a leaf has depth 0), the new node rooted in a frame
    /// while its children are built.
    @inline(__always)
    public static func make(_ m: Mutator, _ node: HeapType<TreeNode>, _ depth: Int) -> Obj<TreeNode> {
        let n = m.allocate(node)
        if depth > 0 {
            let f = m.pushFrame(slots: 1)
            f[0, as: TreeNode.self] = n
            let l = make(m, node, depth - 1)
            m[n].left = l
            let r = make(m, node, depth - 1)
            m[n].right = r
            m.popFrame(f)
        }
        return n
    }

    /// Nodes in the tree.
    public static func check(_ m: Mutator, _ t: Obj<TreeNode>) -> Int {
        let l = m[t].left
        if l.isNull { return 1 }
        return 1 + check(m, l) + check(m, m[t].right)
    }

    /// Run the benchmark; returns the output lines (without the summary).
    public static func run(heap: Heap, n: Int, output: (String) -> Void) throws {
        let node = try heap.register(TreeNode.self)
        let minDepth = 4
        let maxDepth = max(minDepth + 2, n)
        heap.withMutator { m in
            let stretch = maxDepth + 1
            m.withFrame(slots: 1) { f in
                f[0, as: TreeNode.self] = make(m, node, stretch)
                output("stretch tree of depth \(stretch)\t check: \(check(m, f[0, as: TreeNode.self]))")
            }
            let longLived = m.pushFrame(slots: 1)
            longLived[0, as: TreeNode.self] = make(m, node, maxDepth)
            for d in stride(from: minDepth, through: maxDepth, by: 2) {
                let iterations = 1 << (maxDepth - d + minDepth)
                var sum = 0
                for _ in 0..<iterations {
                    sum += check(m, make(m, node, d))
                }
                output("\(iterations)\t trees of depth \(d)\t check: \(sum)")
            }
            output("long lived tree of depth \(maxDepth)\t check: \(check(m, longLived[0, as: TreeNode.self]))")
            m.popFrame(longLived)
        }
    }
}
