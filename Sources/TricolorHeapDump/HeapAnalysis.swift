import Foundation

// The analyses of `tricolor heapdump` (viewcore's `histogram`, `reachable` and
// `breakdown`, plus a dominator tree as in Eclipse MAT and V8's heap snapshots):
//
// - top: per type, objects, bytes and retained bytes. An object's retained size is its
//   size plus that of every object it dominates (Dominators.swift): what would be freed
//   if it were unreachable. A type's retained bytes add up its objects' retained sizes,
//   except for objects whose immediate dominator has the same type (the second and later
//   links of a list, the nodes under a tree's root), which are already inside their
//   dominator's figure.
// - why: the shortest path from a named root to an object (breadth-first search from
//   all roots at once), and its dominator chain from the roots down.
// - diff: growth between two dumps by type and by allocation site (the heap profile's
//   sampled live objects, named by the writer's symbolized frames, so two processes of
//   one binary compare even though their code loads at different addresses).
// - classes: fragmentation per size class, from the span records.
//
// The graph: node 0 is a virtual root with an edge to every distinct root target;
// object v is node v + 1.

/// A dump with its object graph, dominator tree and retained sizes.
public final class HeapAnalysis: @unchecked Sendable {
    /// The dump analysed.
    public let dump: HeapDump
    /// Node 0 is the virtual root, object v is node v + 1.
    public let graph: CSRGraph
    /// Dominator tree of `graph` from node 0.
    public let dominators: DominatorTree
    /// Retained bytes per object index (0 for objects no root reaches).
    public let retained: [UInt64]

    /// Builds the graph and computes dominators and retained sizes: O((n + m) log n).
    public init(_ dump: HeapDump) {
        self.dump = dump
        let n = dump.objectCount
        var rootTargets = dump.roots.map { $0.target + 1 }
        rootTargets.sort()
        var unique: [Int32] = []
        unique.reserveCapacity(rootTargets.count)
        for t in rootTargets where unique.last != t { unique.append(t) }
        let nr = Int32(unique.count)
        var starts = [Int32](repeating: 0, count: n + 2)
        starts[1] = nr
        dump.edgeStarts.withUnsafeBufferPointer { es in
            for v in 0..<n { starts[v + 2] = nr + es[v + 1] }
        }
        var targets = unique
        targets.reserveCapacity(unique.count + dump.edgeTargets.count)
        for t in dump.edgeTargets { targets.append(t + 1) }
        graph = CSRGraph(starts: starts, targets: targets)
        dominators = DominatorTree(graph: graph, root: 0)
        let all = dominators.retainedSizes { $0 == 0 ? 0 : dump.sizes[$0 - 1] }
        retained = Array(all.dropFirst())
    }

    /// Whether object `v` is reachable from a root.
    public func isReachable(_ v: Int) -> Bool { dominators.idom[v + 1] >= 0 }

    /// Immediate dominator of object `v` as an object index, or nil when it is the
    /// virtual root (the object is held by roots along more than one path, or by one) or
    /// `v` is unreachable.
    public func immediateDominator(_ v: Int) -> Int? {
        let d = dominators.idom[v + 1]
        return d > 0 ? Int(d) - 1 : nil
    }

    // MARK: top

    /// One type's totals.
    public struct TypeRow: Sendable, Codable, Equatable {
        /// Type name ("[]T" for arrays of T).
        public var type: String
        /// Objects.
        public var count: Int
        /// Bytes of the objects.
        public var bytes: UInt64
        /// Bytes retained by the objects (see the file comment).
        public var retainedBytes: UInt64
    }

    /// How `top` orders its rows.
    public enum TopOrder: String, Sendable, CaseIterable {
        /// By retained bytes.
        case retained
        /// By bytes.
        case bytes
        /// By object count.
        case count
    }

    /// Objects no root reaches (allocated since the last collection and already
    /// garbage) and their bytes.
    public var unreachable: (count: Int, bytes: UInt64) {
        var n = 0, b: UInt64 = 0
        for v in 0..<dump.objectCount where !isReachable(v) { n += 1; b += dump.sizes[v] }
        return (n, b)
    }

    /// Types of the reachable objects by count, bytes and retained bytes, largest first
    /// (by `order`). Unreachable objects (see `unreachable`) are left out.
    public func top(order: TopOrder = .retained) -> [TypeRow] {
        var rows: [UInt16: TypeRow] = [:]
        for v in 0..<dump.objectCount where isReachable(v) {
            let w = dump.typeWords[v]
            var row = rows[w] ?? TypeRow(type: dump.typeName(word: w), count: 0, bytes: 0, retainedBytes: 0)
            row.count += 1
            row.bytes += dump.sizes[v]
            if let d = immediateDominator(v), dump.typeWords[d] == w {} else { row.retainedBytes += retained[v] }
            rows[w] = row
        }
        return rows.values.sorted {
            switch order {
            case .retained: return ($0.retainedBytes, $0.bytes, $0.type) > ($1.retainedBytes, $1.bytes, $1.type)
            case .bytes: return ($0.bytes, $0.count, $0.type) > ($1.bytes, $1.count, $1.type)
            case .count: return ($0.count, $0.bytes, $0.type) > ($1.count, $1.bytes, $1.type)
            }
        }
    }

    // MARK: why

    /// An object on a retention path.
    public struct PathStep: Sendable, Codable, Equatable {
        /// The object's address.
        public var address: UInt64
        /// Its type.
        public var type: String
        /// Its size.
        public var size: UInt64
        /// Its retained size.
        public var retainedBytes: UInt64
        /// Byte offset of the pointer word, in the previous step's object, that points
        /// here (nil for the first step, which a root points to).
        public var fromOffset: Int?
    }

    /// Why an object is alive.
    public struct Why: Sendable, Codable, Equatable {
        /// The object asked about.
        public var target: PathStep
        /// The root the shortest path starts from (nil: unreachable).
        public var root: String?
        /// The shortest path from the root to the object, the object last.
        public var path: [PathStep]
        /// The dominator chain: from the outermost object that dominates the target down
        /// to the target (each keeps everything after it alive).
        public var dominators: [PathStep]
    }

    func step(_ v: Int, from offset: Int? = nil) -> PathStep {
        PathStep(address: dump.addresses[v], type: dump.typeName(of: v), size: dump.sizes[v], retainedBytes: retained[v], fromOffset: offset)
    }

    /// Shortest path from a root to object `v` by breadth-first search (ties go to the
    /// root listed first), and its dominator chain.
    public func why(object v: Int) -> Why {
        let n = dump.objectCount
        var parent = [Int32](repeating: -2, count: n)    // -2 unvisited, -1 reached from a root
        var parentEdge = [Int32](repeating: -1, count: n)
        var rootOf = [Int32](repeating: -1, count: n)
        var queue: [Int32] = []
        queue.reserveCapacity(1024)
        for (i, r) in dump.roots.enumerated() where parent[Int(r.target)] == -2 {
            parent[Int(r.target)] = -1
            rootOf[Int(r.target)] = Int32(i)
            queue.append(r.target)
        }
        var head = 0
        while head < queue.count && parent[v] == -2 {
            let u = Int(queue[head]); head += 1
            for e in Int(dump.edgeStarts[u])..<Int(dump.edgeStarts[u + 1]) {
                let t = Int(dump.edgeTargets[e])
                if parent[t] == -2 {
                    parent[t] = Int32(u)
                    parentEdge[t] = Int32(e)
                    rootOf[t] = rootOf[u]
                    queue.append(Int32(t))
                }
            }
        }
        var path: [PathStep] = []
        var root: String? = nil
        if parent[v] != -2 {
            var x = v
            while true {
                let e = parentEdge[x]
                path.append(step(x, from: e >= 0 ? Int(dump.edgeOffsets[Int(e)]) : nil))
                if parent[x] == -1 { break }
                x = Int(parent[x])
            }
            path.reverse()
            root = dump.roots[Int(rootOf[v])].name
        }
        var chain: [PathStep] = [step(v)]
        var x = v
        while let d = immediateDominator(x) { chain.append(step(d)); x = d }
        chain.reverse()
        return Why(target: step(v), root: root, path: path, dominators: chain)
    }

    /// `why(object:)` for the object containing `address`, or nil when none does.
    public func why(address: UInt64) -> Why? {
        dump.index(containing: address).map { why(object: $0) }
    }

    /// `why(object:)` for the object of type `name` that retains the most, or nil when
    /// the dump has no object of that type.
    public func why(type name: String) -> Why? {
        var best = -1
        for v in 0..<dump.objectCount where dump.typeName(of: v) == name {
            if best < 0 || retained[v] > retained[best] { best = v }
        }
        return best < 0 ? nil : why(object: best)
    }

    // MARK: classes

    /// One size class's use of its spans.
    public struct ClassRow: Sendable, Codable, Equatable {
        /// Size class (0: large objects).
        public var sizeClass: Int
        /// Bytes per slot (0 for large objects, whose spans differ).
        public var elemSize: Int
        /// Spans of the class.
        public var spans: Int
        /// Slots in them.
        public var slots: Int
        /// Slots allocated.
        public var allocated: Int
        /// Bytes of the spans.
        public var spanBytes: UInt64
        /// Bytes of allocated slots.
        public var inUseBytes: UInt64
        /// Spans in mutator caches.
        public var cachedSpans: Int
        /// Spans that still need sweeping.
        public var unsweptSpans: Int
        /// 1 − inUseBytes / spanBytes: free slots and tail waste.
        public var fragmentation: Double
    }

    /// Fragmentation per size class, from the span records (stack spans left out).
    public static func classes(_ dump: HeapDump) -> [ClassRow] {
        var rows: [Int: ClassRow] = [:]
        for s in dump.spans where s.state == 1 {
            var r = rows[s.sizeClass] ?? ClassRow(sizeClass: s.sizeClass, elemSize: s.sizeClass == 0 ? 0 : s.elemSize, spans: 0, slots: 0,
                                                   allocated: 0, spanBytes: 0, inUseBytes: 0, cachedSpans: 0, unsweptSpans: 0, fragmentation: 0)
            r.spans += 1
            r.slots += s.nelems
            r.allocated += s.allocCount
            r.spanBytes += UInt64(s.pages) * 8192
            r.inUseBytes += UInt64(s.allocCount * s.elemSize)
            if s.cachedBy != nil { r.cachedSpans += 1 }
            if s.sweepStatus.hasPrefix("needs") || s.sweepStatus.contains("needs sweeping") { r.unsweptSpans += 1 }
            rows[s.sizeClass] = r
        }
        return rows.values.map { r in
            var r = r
            r.fragmentation = r.spanBytes == 0 ? 0 : 1 - Double(r.inUseBytes) / Double(r.spanBytes)
            return r
        }.sorted { $0.sizeClass < $1.sizeClass }
    }

    // MARK: diff

    /// Growth of one type or site between two dumps.
    public struct DiffRow: Sendable, Codable, Equatable {
        /// Type name or allocation site.
        public var key: String
        /// Objects in the first dump.
        public var countA: Int
        /// Objects in the second dump.
        public var countB: Int
        /// Bytes in the first dump.
        public var bytesA: UInt64
        /// Bytes in the second dump.
        public var bytesB: UInt64
        /// countB − countA.
        public var countDelta: Int { countB - countA }
        /// bytesB − bytesA.
        public var bytesDelta: Int64 { Int64(bitPattern: bytesB &- bytesA) }
    }

    /// Growth between two dumps.
    public struct Diff: Sendable, Codable {
        /// By type, largest byte growth first.
        public var byType: [DiffRow]
        /// By allocation site of the heap profile's sampled live objects (raw samples:
        /// each stands for about MemProfileRate bytes), largest growth first.
        public var bySite: [DiffRow]
    }

    /// The allocation site of a sampled stack: the first frame outside the runtime
    /// (module `Tricolor` and the standard-library helpers it calls, by
    /// `isRuntimeFrameName`), by the writer's symbolized names (a FRAME record holds the
    /// frames at one address, innermost first, one per line), else the first address.
    public static func site(_ dump: HeapDump, stack: [UInt64]) -> String {
        for pc in stack {
            guard let names = dump.frames[pc] else { continue }
            for name in names.split(separator: "\n").map(String.init) {
                if isRuntimeFrameName(name) { continue }
                return name
            }
        }
        return stack.first.map { "0x" + String($0, radix: 16) } ?? "<no stack>"
    }

    /// Growth by type and by allocation site from dump `a` to dump `b`, counting the
    /// objects a root reaches (garbage allocated since the last collection would
    /// otherwise swamp a leak).
    public static func diff(_ a: HeapAnalysis, _ b: HeapAnalysis) -> Diff {
        func byType(_ x: HeapAnalysis) -> [String: (Int, UInt64)] {
            let d = x.dump
            var out: [UInt16: (Int, UInt64)] = [:]
            for v in 0..<d.objectCount where x.isReachable(v) {
                let e = out[d.typeWords[v]] ?? (0, 0)
                out[d.typeWords[v]] = (e.0 + 1, e.1 + d.sizes[v])
            }
            var named: [String: (Int, UInt64)] = [:]
            for (w, e) in out {
                let k = d.typeName(word: w)
                let x = named[k] ?? (0, 0)
                named[k] = (x.0 + e.0, x.1 + e.1)
            }
            return named
        }
        func bySite(_ x: HeapAnalysis) -> [String: (Int, UInt64)] {
            let d = x.dump
            var out: [String: (Int, UInt64)] = [:]
            var siteOfBucket: [Int: String] = [:]
            for (v, b) in d.samples where x.isReachable(Int(v)) {
                let s = siteOfBucket[b] ?? site(d, stack: d.buckets[b]?.stack ?? [])
                siteOfBucket[b] = s
                let e = out[s] ?? (0, 0)
                out[s] = (e.0 + 1, e.1 + d.sizes[Int(v)])
            }
            return out
        }
        func rows(_ x: [String: (Int, UInt64)], _ y: [String: (Int, UInt64)]) -> [DiffRow] {
            Set(x.keys).union(y.keys).map { k in
                DiffRow(key: k, countA: x[k]?.0 ?? 0, countB: y[k]?.0 ?? 0, bytesA: x[k]?.1 ?? 0, bytesB: y[k]?.1 ?? 0)
            }.sorted { ($0.bytesDelta, $0.countDelta, $0.key) > ($1.bytesDelta, $1.countDelta, $1.key) }
        }
        return Diff(byType: rows(byType(a), byType(b)), bySite: rows(bySite(a), bySite(b)))
    }
}

// MARK: text and Graphviz

/// Text renderings of the analyses (what `tricolor heapdump` prints).
public enum HeapDumpText {
    /// Bytes with a binary unit.
    public static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }

    /// A signed byte count.
    public static func signedBytes(_ n: Int64) -> String {
        (n < 0 ? "-" : "+") + bytes(UInt64(n.magnitude))
    }

    /// `top` as a table.
    public static func top(_ rows: [HeapAnalysis.TypeRow], limit: Int) -> String {
        var out = pad("type", 40) + lpad("count", 12) + lpad("bytes", 14) + lpad("retained", 14) + "\n"
        for r in rows.prefix(limit) {
            out += pad(r.type, 40) + lpad("\(r.count)", 12) + lpad(bytes(r.bytes), 14) + lpad(bytes(r.retainedBytes), 14) + "\n"
        }
        return out
    }

    /// A retention path and dominator chain.
    public static func why(_ w: HeapAnalysis.Why) -> String {
        func line(_ s: HeapAnalysis.PathStep) -> String {
            "0x\(String(s.address, radix: 16)) \(s.type) (\(bytes(s.size)), retains \(bytes(s.retainedBytes)))"
        }
        var out = "object \(line(w.target))\n"
        guard let root = w.root else { return out + "unreachable: no root reaches it (garbage not yet swept)\n" }
        out += "shortest path from a root (\(w.path.count) object\(w.path.count == 1 ? "" : "s")):\n  \(root)\n"
        for s in w.path {
            out += "  -> " + (s.fromOffset.map { "[+\($0)] " } ?? "") + line(s) + "\n"
        }
        out += "dominator chain (each keeps the rest alive):\n"
        for s in w.dominators { out += "  " + line(s) + "\n" }
        return out
    }

    /// A retention path as a Graphviz digraph (`dot -Tsvg`).
    public static func dot(_ w: HeapAnalysis.Why) -> String {
        func q(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var out = "digraph retention {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n"
        out += "  root [label=\(q(w.root ?? "unreachable")), shape=ellipse];\n"
        var prev = "root"
        for (i, s) in w.path.enumerated() {
            let id = "n\(i)"
            out += "  \(id) [label=\(q("\(s.type)\n0x\(String(s.address, radix: 16))\n\(bytes(s.size)), retains \(bytes(s.retainedBytes))"))];\n"
            out += "  \(prev) -> \(id)" + (s.fromOffset.map { " [label=\(q("+\($0)"))]" } ?? "") + ";\n"
            prev = id
        }
        let onPath = Set(w.path.map(\.address))
        var prevDom: String? = nil
        for (i, s) in w.dominators.enumerated() {
            let id = onPath.contains(s.address) ? "n\(w.path.firstIndex { $0.address == s.address }!)" : "d\(i)"
            if !onPath.contains(s.address) {
                out += "  \(id) [label=\(q("\(s.type)\n0x\(String(s.address, radix: 16))")), style=dashed];\n"
            }
            if let p = prevDom { out += "  \(p) -> \(id) [style=dotted, color=gray, label=\"dominates\"];\n" }
            prevDom = id
        }
        return out + "}\n"
    }

    /// Fragmentation per size class.
    public static func classes(_ rows: [HeapAnalysis.ClassRow]) -> String {
        var out = lpad("class", 6) + lpad("size", 8) + lpad("spans", 8) + lpad("slots", 10) + lpad("alloc", 10)
            + lpad("in use", 12) + lpad("span bytes", 12) + lpad("frag", 7) + lpad("cached", 8) + lpad("unswept", 9) + "\n"
        for r in rows {
            out += lpad("\(r.sizeClass)", 6) + lpad(r.sizeClass == 0 ? "large" : "\(r.elemSize)", 8) + lpad("\(r.spans)", 8)
                + lpad("\(r.slots)", 10) + lpad("\(r.allocated)", 10) + lpad(bytes(r.inUseBytes), 12) + lpad(bytes(r.spanBytes), 12)
                + lpad(String(format: "%.1f%%", r.fragmentation * 100), 7) + lpad("\(r.cachedSpans)", 8) + lpad("\(r.unsweptSpans)", 9) + "\n"
        }
        return out
    }

    /// Growth between two dumps.
    public static func diff(_ d: HeapAnalysis.Diff, limit: Int) -> String {
        var out = "growth by type:\n" + pad("type", 40) + lpad("objects", 14) + lpad("bytes", 14) + "\n"
        for r in d.byType.prefix(limit) {
            out += pad(r.key, 40) + lpad((r.countDelta >= 0 ? "+" : "") + "\(r.countDelta)", 14) + lpad(signedBytes(r.bytesDelta), 14) + "\n"
        }
        out += "\ngrowth by allocation site (heap-profile samples of live objects):\n" + lpad("samples", 10) + lpad("bytes", 14) + "  site\n"
        for r in d.bySite.prefix(limit) {
            out += lpad((r.countDelta >= 0 ? "+" : "") + "\(r.countDelta)", 10) + lpad(signedBytes(r.bytesDelta), 14) + "  " + r.key + "\n"
        }
        return out
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
    static func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
}
