import Tricolor

/// Hans Boehm's GCBench (after John Ellis and Pete Kovac's Java version): a long-lived
/// tree of depth 16 and a 500 000-element pointer-free array stay alive while trees of
/// depth 4…16 are built top-down and bottom-up, each round allocating as much as a tree
/// of depth 18.
public enum GCBench {
    static let stretchTreeDepth = 18
    static let longLivedTreeDepth = 16
    static let arraySize = 500_000
    static let minTreeDepth = 4
    static let maxTreeDepth = 16

    public static func layout() -> TypeLayout {
        // left, right, and two 32-bit ints i, j (Java's Node; 24 bytes as in Go and C)
        TypeLayout(name: "gcbench.Node", size: 24, pointerWords: [0, 1])
    }

    static func treeSize(_ i: Int) -> Int { (1 << (i + 1)) - 1 }
    static func numIters(_ i: Int) -> Int { 2 * treeSize(stretchTreeDepth) / treeSize(i) }

    /// Build a tree top-down below `node`, which the caller keeps rooted.
    static func populate(_ m: Mutator, _ type: ObjectType, _ depth: Int, _ node: Ref) {
        if depth <= 0 { return }
        let f = m.pushFrame(slots: 1)
        f[0] = node
        m.store(node, 0, m.allocate(type))
        m.store(node, 1, m.allocate(type))
        populate(m, type, depth - 1, m.load(node, 0))
        populate(m, type, depth - 1, m.load(node, 1))
        m.popFrame(f)
    }

    /// Build a tree bottom-up.
    static func makeTree(_ m: Mutator, _ type: ObjectType, _ depth: Int) -> Ref {
        if depth <= 0 { return m.allocate(type) }
        let f = m.pushFrame(slots: 2)
        f[0] = makeTree(m, type, depth - 1)
        f[1] = makeTree(m, type, depth - 1)
        let n = m.allocate(type)
        m.store(n, 0, f[0])
        m.store(n, 1, f[1])
        m.popFrame(f)
        return n
    }

    static func timeConstruction(_ m: Mutator, _ type: ObjectType, _ depth: Int, _ iterations: Int, threads: Int, _ output: (String) -> Void) {
        output("Creating \(iterations) trees of depth \(depth)")
        var t0 = monotonicSeconds()
        m.withFrame(slots: 1) { f in
            for _ in 0..<iterations {
                f[0] = m.allocate(type)
                populate(m, type, depth, f[0])
                f[0] = .null
            }
        }
        output("\tTop down construction took \(Int((monotonicSeconds() - t0) * 1000)) msec")
        t0 = monotonicSeconds()
        for _ in 0..<iterations { _ = makeTree(m, type, depth) }
        output("\tBottom up construction took \(Int((monotonicSeconds() - t0) * 1000)) msec")
    }

    public static func run(heap: Heap, threads: Int = 1, output: (String) -> Void) throws {
        let node = try heap.register(layout())
        let t0 = monotonicSeconds()
        heap.withMutator { m in
            output("Garbage Collector Test")
            output(" Stretching memory with a binary tree of depth \(stretchTreeDepth)")
            _ = makeTree(m, node, stretchTreeDepth)

            output(" Creating a long-lived binary tree of depth \(longLivedTreeDepth)")
            let roots = m.pushFrame(slots: 2)
            roots[0] = m.allocate(node)
            populate(m, node, longLivedTreeDepth, roots[0])

            output(" Creating a long-lived array of \(arraySize) doubles")
            roots[1] = m.allocateBytes(arraySize * 8)
            let array = roots[1].rawPointer.assumingMemoryBound(to: Double.self)
            for i in 0..<(arraySize / 2) { array[i] = 1.0 / Double(i + 1) }

            if threads <= 1 {
                for d in stride(from: minTreeDepth, through: maxTreeDepth, by: 2) {
                    timeConstruction(m, node, d, numIters(d), threads: 1, output)
                }
            } else {
                // Each thread builds its share of every round's trees.
                let lines = LineLog()
                m.blocking {
                    runThreads(threads) { t in
                        heap.withMutator { tm in
                            for d in stride(from: minTreeDepth, through: maxTreeDepth, by: 2) {
                                let n = numIters(d) / threads + (t < numIters(d) % threads ? 1 : 0)
                                timeConstruction(tm, node, d, n, threads: threads) { if t == 0 { lines.append($0) } }
                            }
                        }
                    }
                }
                for l in lines.lines { output(l) }
            }
            if roots[0].isNull || array[1000] != 1.0 / 1001.0 {
                output("Failed")   // the long-lived data must survive
            }
            m.popFrame(roots)
        }
        output("Completed in \(Int((monotonicSeconds() - t0) * 1000)) msec")
    }
}

final class LineLog: @unchecked Sendable {
    var lines: [String] = []
    func append(_ s: String) { lines.append(s) }
}
