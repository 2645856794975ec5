// Dominator trees (Lengauer and Tarjan, "A fast algorithm for finding dominators in a
// flowgraph", 1979: the simple version with path compression, O(m log n)), written
// without recursion so that a graph of 10^7 nodes with a path that long needs no deep
// call stack: the depth-first search keeps its own stack, and `eval`'s path compression
// walks the ancestor chain into a scratch array and back.
//
// Everything is computed in depth-first preorder numbers (the root is 0), where a
// node's immediate dominator always has a smaller number than the node; retained sizes
// are then one backward pass (`retainedSizes`).
//
// Invariants: idom(root) == -1; for every other reachable v, idom(v) is reachable and
// dominates v; unreachable nodes have idom -1 and are not in `order`.

/// A directed graph in compressed sparse row form: node v's successors are
/// `targets[starts[v] ..< starts[v + 1]]`.
public struct CSRGraph: Sendable {
    /// Offsets into `targets`, one per node plus one.
    public var starts: [Int32]
    /// Successor node indexes.
    public var targets: [Int32]
    /// Number of nodes.
    public var nodeCount: Int { starts.count - 1 }

    /// A graph from its rows. - Precondition: `starts` is nondecreasing, starts with 0 and
    /// ends with `targets.count`; every target is a node index.
    public init(starts: [Int32], targets: [Int32]) {
        self.starts = starts
        self.targets = targets
    }

    /// A graph from an adjacency list (tests, small graphs).
    public init(adjacency: [[Int]]) {
        var s: [Int32] = [0]
        var t: [Int32] = []
        for row in adjacency {
            t.append(contentsOf: row.map { Int32($0) })
            s.append(Int32(t.count))
        }
        self.init(starts: s, targets: t)
    }

    /// The reverse graph (predecessors), by counting sort: O(n + m).
    public func reversed() -> CSRGraph {
        let n = nodeCount
        var count = [Int32](repeating: 0, count: n + 1)
        for t in targets { count[Int(t) + 1] += 1 }
        for i in 0..<n { count[i + 1] += count[i] }
        var fill = count
        var rt = [Int32](repeating: 0, count: targets.count)
        starts.withUnsafeBufferPointer { st in
            targets.withUnsafeBufferPointer { tg in
                rt.withUnsafeMutableBufferPointer { out in
                    for v in 0..<n {
                        for e in Int(st[v])..<Int(st[v + 1]) {
                            let t = Int(tg[e])
                            out[Int(fill[t])] = Int32(v)
                            fill[t] += 1
                        }
                    }
                }
            }
        }
        return CSRGraph(starts: count, targets: rt)
    }
}

/// The dominator tree of a graph from a root.
public struct DominatorTree: Sendable {
    /// Immediate dominator of each node (node indexes), -1 for the root and for nodes
    /// the root does not reach.
    public var idom: [Int32]
    /// Reachable nodes in depth-first preorder (the root first). Every node's immediate
    /// dominator comes before it.
    public var order: [Int32]

    /// Computes the dominator tree of `graph` from `root` (Lengauer–Tarjan with path
    /// compression, iterative).
    public init(graph: CSRGraph, root: Int) {
        let n = graph.nodeCount
        var num = [Int32](repeating: -1, count: n)      // node → preorder number
        var order = [Int32]()                            // preorder number → node
        order.reserveCapacity(n)
        var parent = [Int32]()                           // preorder → parent's preorder
        parent.reserveCapacity(n)
        // 1. Depth-first search with an explicit stack of (node, next edge).
        graph.starts.withUnsafeBufferPointer { st in
            graph.targets.withUnsafeBufferPointer { tg in
                var stackNode: [Int32] = [Int32(root)]
                var stackEdge: [Int32] = [st[root]]
                num[root] = 0
                order.append(Int32(root))
                parent.append(-1)
                while let v = stackNode.last {
                    let e = stackEdge[stackEdge.count - 1]
                    if e < st[Int(v) + 1] {
                        stackEdge[stackEdge.count - 1] = e + 1
                        let w = Int(tg[Int(e)])
                        if num[w] < 0 {
                            num[w] = Int32(order.count)
                            parent.append(num[Int(v)])
                            order.append(Int32(w))
                            stackNode.append(Int32(w))
                            stackEdge.append(st[w])
                        }
                    } else {
                        stackNode.removeLast()
                        stackEdge.removeLast()
                    }
                }
            }
        }
        let count = order.count
        let preds = graph.reversed()
        // 2. Semidominators, buckets and (relative) immediate dominators, in preorder numbers.
        var semi = [Int32](0..<Int32(count))
        var label = semi
        var ancestor = [Int32](repeating: -1, count: count)
        var dom = [Int32](repeating: -1, count: count)
        var bucketHead = [Int32](repeating: -1, count: count)
        var bucketNext = [Int32](repeating: -1, count: count)
        var path: [Int32] = []
        semi.withUnsafeMutableBufferPointer { semi in
        label.withUnsafeMutableBufferPointer { label in
        ancestor.withUnsafeMutableBufferPointer { ancestor in
            // eval: the node of minimal semi on the compressed ancestor path of v.
            func eval(_ v: Int32) -> Int32 {
                if ancestor[Int(v)] < 0 { return v }
                // Collect the path up to the node below the forest root, then compress
                // it top-down.
                path.removeAll(keepingCapacity: true)
                var x = v
                while ancestor[Int(ancestor[Int(x)])] >= 0 { path.append(x); x = ancestor[Int(x)] }
                var i = path.count - 1
                while i >= 0 {
                    let y = Int(path[i])
                    let a = Int(ancestor[y])
                    if semi[Int(label[a])] < semi[Int(label[y])] { label[y] = label[a] }
                    ancestor[y] = ancestor[a]
                    i -= 1
                }
                return label[Int(v)]
            }
            preds.starts.withUnsafeBufferPointer { ps in
            preds.targets.withUnsafeBufferPointer { pt in
                var w = count - 1
                while w >= 1 {
                    let node = Int(order[w])
                    for e in Int(ps[node])..<Int(ps[node + 1]) {
                        let v = num[Int(pt[e])]
                        if v < 0 { continue }   // an unreachable predecessor
                        let u = eval(v)
                        if semi[Int(u)] < semi[w] { semi[w] = semi[Int(u)] }
                    }
                    let s = Int(semi[w])
                    bucketNext[w] = bucketHead[s]
                    bucketHead[s] = Int32(w)
                    let p = Int(parent[w])
                    ancestor[w] = Int32(p)   // link(parent, w)
                    var b = bucketHead[p]
                    while b >= 0 {
                        let u = eval(b)
                        dom[Int(b)] = semi[Int(u)] < semi[Int(b)] ? u : Int32(p)
                        b = bucketNext[Int(b)]
                    }
                    bucketHead[p] = -1
                    w -= 1
                }
            }
            }
            // 3. Final pass in preorder.
            if count > 1 {
                for w in 1..<count where dom[w] != semi[w] { dom[w] = dom[Int(dom[w])] }
            }
        }
        }
        }
        var idom = [Int32](repeating: -1, count: n)
        for w in 1..<max(count, 1) { idom[Int(order[w])] = order[Int(dom[w])] }
        self.idom = idom
        self.order = order
    }

    /// Retained size of every node: its own size plus the sizes of all nodes it
    /// dominates (0 for unreachable nodes). One pass in reverse preorder.
    public func retainedSizes(_ size: (Int) -> UInt64) -> [UInt64] {
        var r = [UInt64](repeating: 0, count: idom.count)
        for v in order { r[Int(v)] = size(Int(v)) }
        var i = order.count - 1
        while i >= 1 {
            let v = Int(order[i])
            r[Int(idom[v])] &+= r[v]
            i -= 1
        }
        return r
    }
}
