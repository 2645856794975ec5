import Tricolor

/// The Benchmarks Game's binary-trees on a Tricolor heap.
/// Rules: min depth 4; max depth = max(6, n); a stretch tree of depth max+1; a long-lived
/// tree of depth max kept for the whole run; for d = 4, 6, …, max: 2^(max−d+4) trees of
/// depth d built and checked. `threads` mutators share each depth's trees.
public enum BinaryTrees {
    public static func layout() -> TypeLayout { TypeLayout(name: "binarytrees.Node", size: 16, pointerWords: [0, 1]) }

    /// Build a tree of `depth` (a leaf has depth 0). The new node is rooted in a frame
    /// while its children are built.
    @inline(__always)
    public static func make(_ m: Mutator, _ node: ObjectType, _ depth: Int) -> Ref {
        let n = m.allocate(node)
        if depth > 0 {
            let f = m.pushFrame(slots: 1)
            f[0] = n
            let l = make(m, node, depth - 1)
            m.store(n, 0, l)
            let r = make(m, node, depth - 1)
            m.store(n, 1, r)
            m.popFrame(f)
        }
        return n
    }

    /// Nodes in the tree.
    public static func check(_ m: Mutator, _ t: Ref) -> Int {
        let l = m.load(t, 0)
        if l.isNull { return 1 }
        return 1 + check(m, l) + check(m, m.load(t, 1))
    }

    /// Run the benchmark; returns the output lines (without the summary).
    public static func run(heap: Heap, n: Int, threads: Int = 1, output: (String) -> Void) throws {
        let node = try heap.register(layout())
        let minDepth = 4
        let maxDepth = max(minDepth + 2, n)
        heap.withMutator { m in
            let stretch = maxDepth + 1
            m.withFrame(slots: 1) { f in
                f[0] = make(m, node, stretch)
                output("stretch tree of depth \(stretch)\t check: \(check(m, f[0]))")
            }
            let longLived = m.pushFrame(slots: 1)
            longLived[0] = make(m, node, maxDepth)
            let depths = Array(stride(from: minDepth, through: maxDepth, by: 2))
            let results = ResultTable(rows: depths.count, columns: threads)
            let work: @Sendable (Mutator, Int) -> Void = { m, t in
                for (row, d) in depths.enumerated() {
                    let iterations = 1 << (maxDepth - d + minDepth)
                    var sum = 0
                    var i = t
                    while i < iterations {
                        let tree = make(m, node, d)
                        sum += check(m, tree)
                        i += threads
                    }
                    results.set(row, t, sum)
                }
            }
            if threads <= 1 {
                work(m, 0)
            } else {
                m.blocking {
                    runThreads(threads) { t in heap.withMutator { tm in work(tm, t) } }
                }
            }
            for (row, d) in depths.enumerated() {
                let iterations = 1 << (maxDepth - d + minDepth)
                output("\(iterations)\t trees of depth \(d)\t check: \(results.sum(row))")
            }
            output("long lived tree of depth \(maxDepth)\t check: \(check(m, longLived[0]))")
            m.popFrame(longLived)
        }
    }
}

/// Per-thread results, written by each thread to its own cells.
final class ResultTable: @unchecked Sendable {
    let cells: UnsafeMutablePointer<Int>
    let columns: Int
    let rows: Int
    init(rows: Int, columns: Int) {
        self.rows = rows; self.columns = columns
        cells = .allocate(capacity: rows * columns)
        cells.initialize(repeating: 0, count: rows * columns)
    }
    deinit { cells.deallocate() }
    func set(_ r: Int, _ c: Int, _ v: Int) { cells[r * columns + c] = v }
    func sum(_ r: Int) -> Int { (0..<columns).reduce(0) { $0 + cells[r * columns + $1] } }
}
