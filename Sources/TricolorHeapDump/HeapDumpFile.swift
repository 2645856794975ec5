import Foundation

// The reader of Tricolor heap dumps (format version 1: docs/heapdump-format.md, written
// by Sources/Tricolor/Observability/HeapDump.swift).
//
// The file is mapped read-only and decoded in one pass into flat arrays (struct of
// arrays, 32-bit node and edge indexes), so that a dump of 10^7 objects costs tens of
// bytes per object and no per-object allocation. Edge targets are written as object
// addresses and resolved to object indexes by binary search over the sorted addresses
// once every object is known (targets that name no object in the dump are dropped and
// counted in `danglingEdges`).
//
// Invariants: `addresses` is strictly increasing; `edgeStarts.count == objectCount + 1`;
// every edge target and root target is an object index.

/// A parse failure: the text names the offset and what was wrong.
public struct HeapDumpFormatError: Error, CustomStringConvertible {
    /// The problem, with the byte offset where it was found.
    public var description: String
}

/// A heap dump, decoded.
public final class HeapDump: @unchecked Sendable {
    /// Format version of the file.
    public private(set) var version = 0
    /// Parameters: pointer size, page size, arena base and reservation, sweepgen, phase, numGC, MemProfileRate, pid.
    public private(set) var params: [String: UInt64] = [:]

    /// A registered type.
    public struct TypeRecord: Sendable, Codable {
        /// Registry index.
        public var id: Int
        /// The registered name.
        public var name: String
        /// Bytes per element.
        public var size: Int
        /// Word indexes holding pointers.
        public var pointerWords: [Int]
    }
    /// Types by registry index.
    public private(set) var types: [Int: TypeRecord] = [:]

    /// A span.
    public struct SpanRecord: Sendable, Codable {
        /// First byte.
        public var base: UInt64
        /// Pages of 8 KiB.
        public var pages: Int
        /// 1 in use, 2 stack.
        public var state: Int
        /// Go's span class (size class << 1 | noscan).
        public var spanClass: Int
        /// Bytes per slot.
        public var elemSize: Int
        /// Slots.
        public var nelems: Int
        /// Slots allocated.
        public var allocCount: Int
        /// "swept", "needs sweeping", "cached", … (empty for stacks).
        public var sweepStatus: String
        /// Mutator caching it, or nil.
        public var cachedBy: Int?
        /// Size class.
        public var sizeClass: Int { spanClass >> 1 }
    }
    /// Spans in address order.
    public private(set) var spans: [SpanRecord] = []

    /// A free run of pages.
    public struct FreeRun: Sendable, Codable {
        /// First byte.
        public var base: UInt64
        /// Pages in the run.
        public var pages: Int
        /// Pages of it returned to the OS.
        public var scavengedPages: Int
    }
    /// Free page runs in address order.
    public private(set) var freeRuns: [FreeRun] = []
    /// Mapped arenas: (index, base).
    public private(set) var arenas: [(index: Int, base: UInt64)] = []

    /// A mutator.
    public struct MutatorRecord: Sendable, Codable {
        /// Mutator id.
        public var id: Int
        /// Kernel thread id.
        public var threadID: UInt64
        /// "running", "parked", "blocking".
        public var status: String
        /// Shadow-stack slots in use.
        public var stackDepth: Int
        /// Shadow-stack capacity in slots.
        public var stackCapacity: Int
        /// The native stack's bounds.
        public var nativeStackLo: UInt64
        /// The native stack's top.
        public var nativeStackHi: UInt64
    }
    /// Mutators attached when the dump was written.
    public private(set) var mutators: [MutatorRecord] = []

    /// What kind of root.
    public enum RootKind: Int, Sendable, Codable {
        /// A shadow-stack slot: a = mutator id, b = slot index.
        case stackSlot = 1
        /// A global root slot: a = slot index.
        case global = 2
        /// A handle: a = slot index.
        case handle = 3
        /// A word of a mutator's native stack, scanned conservatively: a = mutator id, b = the word.
        case conservative = 4
        /// An object or argument waiting in the finalizer queue.
        case finalizerQueue = 5
        /// Kept because of a lifecycle record: a = 1 a finalizer's object (the collector
        /// marks through it), 2 a weak handle object, 3 a cleanup's argument (b = the
        /// cleanup's id).
        case special = 6
        /// An object held in a pool (primary or victim cache).
        case pool = 7
    }
    /// A root.
    public struct Root: Sendable, Codable {
        /// Kind of root.
        public var kind: RootKind
        /// Object index of the target.
        public var target: Int32
        /// See `RootKind`.
        public var a: UInt64
        /// See `RootKind`.
        public var b: UInt64
        /// "mutator 1 slot 3", "global #0", "handle #2", "conservative word 0x… on mutator 1's stack".
        public var name: String {
            switch kind {
            case .stackSlot: return "mutator \(a) stack slot \(b)"
            case .global: return "global #\(a)"
            case .handle: return "handle #\(a)"
            case .conservative: return "conservative word 0x\(String(b, radix: 16)) on mutator \(a)'s native stack"
            case .finalizerQueue: return "finalizer queue"
            case .special:
                switch a {
                case 1: return "finalizer (its object, marked through)"
                case 2: return "weak handle object"
                case 3: return "cleanup #\(b) argument"
                default: return "lifecycle record kind \(a)"
                }
            case .pool: return "pool"
            }
        }
    }
    /// Every root.
    public private(set) var roots: [Root] = []

    /// A heap-profile bucket.
    public struct Bucket: Sendable, Codable {
        /// Bucket id.
        public var id: Int
        /// Object size.
        public var size: Int
        /// Sampled allocations (raw samples) and their bytes.
        public var allocObjects: Int
        /// Bytes of sampled allocations.
        public var allocBytes: Int
        /// Sampled frees.
        public var freeObjects: Int
        /// Bytes of sampled frees.
        public var freeBytes: Int
        /// Return addresses, innermost first.
        public var stack: [UInt64]
    }
    /// Heap-profile buckets by id.
    public private(set) var buckets: [Int: Bucket] = [:]
    /// Function names of return addresses, when the writer symbolized them.
    public private(set) var frames: [UInt64: String] = [:]
    /// MemStats fields by Go-style name (`heapAlloc`, `numGC`, …).
    public private(set) var memStats: [(name: String, value: UInt64)] = []
    /// Specials (finalizers, weak handles) when the runtime has them: object index and kind.
    public private(set) var specials: [(object: Int32, kind: String)] = []
    /// Free-form text records (key, value), e.g. the fatal-error message.
    public private(set) var texts: [(key: String, value: String)] = []

    // Objects, struct of arrays. Written only while parsing (init); `@exclusivity(unchecked)`
    // spares the analyses a dynamic exclusivity check per element read.
    /// Object addresses, increasing.
    @exclusivity(unchecked) public private(set) var addresses: [UInt64] = []
    /// Slot type word: registry index | 0x8000 for arrays.
    @exclusivity(unchecked) public private(set) var typeWords: [UInt16] = []
    /// Object sizes in bytes.
    @exclusivity(unchecked) public private(set) var sizes: [UInt64] = []
    /// Outgoing edges: object v's are `edgeTargets[edgeStarts[v] ..< edgeStarts[v+1]]`.
    @exclusivity(unchecked) public private(set) var edgeStarts: [Int32] = [0]
    /// Target object indexes.
    @exclusivity(unchecked) public private(set) var edgeTargets: [Int32] = []
    /// Byte offset in the source object of each edge's pointer word.
    @exclusivity(unchecked) public private(set) var edgeOffsets: [UInt32] = []
    /// Sampled objects: object index → bucket id.
    @exclusivity(unchecked) public private(set) var samples: [Int32: Int] = [:]
    /// Edges whose target was no object of the dump.
    public private(set) var danglingEdges = 0

    /// Number of objects.
    public var objectCount: Int { addresses.count }

    /// Reads and decodes the dump at `path`.
    /// - Throws: `HeapDumpFormatError` for a file that is not a version-1 dump or is cut short;
    ///   a Foundation error when the file cannot be read.
    public convenience init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        try self.init(data: data)
    }

    /// Decodes a dump held in memory.
    /// - Throws: `HeapDumpFormatError` for a malformed dump.
    public init(data: Data) throws {
        try data.withUnsafeBytes { raw in try parse(raw) }
    }

    /// Object index of the object whose first byte is `address`, or nil.
    public func index(ofBase address: UInt64) -> Int? {
        let i = lowerBound(address)
        return i < addresses.count && addresses[i] == address ? i : nil
    }

    /// Object index of the object containing `address` (base or interior), or nil.
    public func index(containing address: UInt64) -> Int? {
        let i = lowerBound(address &+ 1) - 1
        guard i >= 0 else { return nil }
        return address < addresses[i] &+ sizes[i] ? i : nil
    }

    private func lowerBound(_ a: UInt64) -> Int {
        var lo = 0, hi = addresses.count
        addresses.withUnsafeBufferPointer { p in
            while lo < hi {
                let mid = (lo + hi) >> 1
                if p[mid] < a { lo = mid + 1 } else { hi = mid }
            }
        }
        return lo
    }

    /// The type name of object `v`: the registered name, "[]Name" for arrays, "<bytes>"
    /// for pointer-free memory whose type is not recorded.
    public func typeName(of v: Int) -> String {
        typeName(word: typeWords[v])
    }

    /// The type name for a slot type word.
    public func typeName(word: UInt16) -> String {
        let id = Int(word & 0x7fff)
        let base = types[id]?.name ?? (id == 0 ? "<bytes>" : "<type \(id)>")
        return word & 0x8000 != 0 ? "[]" + base : base
    }

    // MARK: parsing

    private func parse(_ raw: UnsafeRawBufferPointer) throws {
        var r = ByteReader(raw)
        let magic = Array("tricolor heapdump\n".utf8)
        guard raw.count >= magic.count, Array(raw[0..<magic.count]) == magic else {
            throw HeapDumpFormatError(description: "not a Tricolor heap dump (no \"tricolor heapdump\" header)")
        }
        r.pos = magic.count
        version = Int(try r.uvarint())
        guard version == 1 else { throw HeapDumpFormatError(description: "heap dump format version \(version) is not supported (this reader knows version 1)") }
        // Locals while parsing (stored properties of a class pay an exclusivity check per
        // access: measured 2x on a 10^7-object dump), assigned at the end.
        var addresses: [UInt64] = [], typeWords: [UInt16] = [], sizes: [UInt64] = []
        var edgeStarts: [Int32] = [0], edgeOffsets: [UInt32] = []
        let guess = max(16, raw.count / 24)
        addresses.reserveCapacity(guess); typeWords.reserveCapacity(guess); sizes.reserveCapacity(guess)
        edgeStarts.reserveCapacity(guess + 1)
        var rawTargets: [UInt64] = []
        rawTargets.reserveCapacity(guess); edgeOffsets.reserveCapacity(guess)
        var rawRootTargets: [(Root, UInt64)] = []
        var rawSamples: [(UInt64, Int)] = []
        var rawSpecials: [(UInt64, String)] = []
        var ended = false
        var endCounts = (objects: 0, roots: 0)
        while !ended {
            guard r.pos < raw.count else { throw HeapDumpFormatError(description: "dump cut short at byte \(r.pos) (no END record)") }
            let at = r.pos
            let tag = try r.uvarint()
            switch tag {
            case 0:
                endCounts = (Int(try r.uvarint()), Int(try r.uvarint()))
                ended = true
            case 1:
                let names = ["pointerSize", "pageSize", "arenaBase", "reservedBytes", "arenaBytes", "sweepgen", "phase", "numGC", "memProfileRate", "pid"]
                for n in names { params[n] = try r.uvarint() }
            case 2:
                let id = Int(try r.uvarint())
                let name = try r.string()
                let size = Int(try r.uvarint())
                let np = Int(try r.uvarint())
                var pw: [Int] = []
                for _ in 0..<np { pw.append(Int(try r.uvarint())) }
                types[id] = TypeRecord(id: id, name: name, size: size, pointerWords: pw)
            case 3:
                let base = try r.uvarint(), pages = Int(try r.uvarint()), state = Int(try r.uvarint()), spc = Int(try r.uvarint())
                let elem = Int(try r.uvarint()), nelems = Int(try r.uvarint()), alloc = Int(try r.uvarint())
                let status = try r.string()
                let cached = Int(try r.uvarint())
                spans.append(SpanRecord(base: base, pages: pages, state: state, spanClass: spc, elemSize: elem, nelems: nelems,
                                        allocCount: alloc, sweepStatus: status, cachedBy: cached == 0 ? nil : cached - 1))
            case 4:
                let addr = try r.uvarint()
                if let last = addresses.last, addr <= last {
                    throw HeapDumpFormatError(description: "object at 0x\(String(addr, radix: 16)) (byte \(at)) is not after the previous one")
                }
                addresses.append(addr)
                typeWords.append(UInt16(truncatingIfNeeded: try r.uvarint()))
                sizes.append(try r.uvarint())
                let ne = Int(try r.uvarint())
                for _ in 0..<ne {
                    edgeOffsets.append(UInt32(truncatingIfNeeded: try r.uvarint()))
                    rawTargets.append(try r.uvarint())
                }
                edgeStarts.append(Int32(rawTargets.count))
            case 5:
                let kind = Int(try r.uvarint())
                let target = try r.uvarint(), a = try r.uvarint(), b = try r.uvarint()
                guard let k = RootKind(rawValue: kind) else { throw HeapDumpFormatError(description: "unknown root kind \(kind) at byte \(at)") }
                rawRootTargets.append((Root(kind: k, target: -1, a: a, b: b), target))
            case 6:
                mutators.append(MutatorRecord(id: Int(try r.uvarint()), threadID: try r.uvarint(), status: try r.string(),
                                              stackDepth: Int(try r.uvarint()), stackCapacity: Int(try r.uvarint()),
                                              nativeStackLo: try r.uvarint(), nativeStackHi: try r.uvarint()))
            case 7:
                let n = Int(try r.uvarint())
                for _ in 0..<n { memStats.append((try r.string(), try r.uvarint())) }
            case 8:
                let id = Int(try r.uvarint()), size = Int(try r.uvarint())
                let ao = Int(try r.uvarint()), ab = Int(try r.uvarint()), fo = Int(try r.uvarint()), fb = Int(try r.uvarint())
                let n = Int(try r.uvarint())
                var st: [UInt64] = []
                for _ in 0..<n { st.append(try r.uvarint()) }
                buckets[id] = Bucket(id: id, size: size, allocObjects: ao, allocBytes: ab, freeObjects: fo, freeBytes: fb, stack: st)
            case 9:
                rawSamples.append((try r.uvarint(), Int(try r.uvarint())))
            case 10:
                let pc = try r.uvarint()
                frames[pc] = try r.string()
            case 11:
                freeRuns.append(FreeRun(base: try r.uvarint(), pages: Int(try r.uvarint()), scavengedPages: Int(try r.uvarint())))
            case 12:
                rawSpecials.append((try r.uvarint(), try r.string()))
            case 13:
                arenas.append((Int(try r.uvarint()), try r.uvarint()))
            case 14:
                texts.append((try r.string(), try r.string()))
            default:
                throw HeapDumpFormatError(description: "unknown record tag \(tag) at byte \(at)")
            }
        }
        self.addresses = addresses
        self.typeWords = typeWords
        self.sizes = sizes
        guard endCounts.objects == addresses.count, endCounts.roots == rawRootTargets.count else {
            throw HeapDumpFormatError(description: "END record counts \(endCounts.objects) objects and \(endCounts.roots) roots, the dump holds \(addresses.count) and \(rawRootTargets.count)")
        }
        // Resolve edge targets to object indexes, dropping dangling ones.
        func find(_ a: UInt64) -> Int? {
            addresses.withUnsafeBufferPointer { p in
                var lo = 0, hi = p.count
                while lo < hi {
                    let mid = (lo + hi) >> 1
                    if p[mid] < a { lo = mid + 1 } else { hi = mid }
                }
                return lo < p.count && p[lo] == a ? lo : nil
            }
        }
        var dangling = 0
        var targets = [Int32]()
        targets.reserveCapacity(rawTargets.count)
        var offsets = [UInt32]()
        offsets.reserveCapacity(rawTargets.count)
        var starts = [Int32](repeating: 0, count: addresses.count + 1)
        var e = 0
        for v in 0..<addresses.count {
            let end = Int(edgeStarts[v + 1])
            while e < end {
                if let t = find(rawTargets[e]) { targets.append(Int32(t)); offsets.append(edgeOffsets[e]) } else { dangling += 1 }
                e += 1
            }
            starts[v + 1] = Int32(targets.count)
        }
        self.danglingEdges = dangling
        self.edgeTargets = targets
        self.edgeOffsets = offsets
        self.edgeStarts = starts
        for (root, t) in rawRootTargets {
            guard let i = index(ofBase: t) else { continue }
            var root = root
            root.target = Int32(i)
            roots.append(root)
        }
        for (a, b) in rawSamples { if let i = index(ofBase: a) { samples[Int32(i)] = b } }
        for (a, k) in rawSpecials { if let i = index(ofBase: a) { specials.append((Int32(i), k)) } }
    }
}

/// Cursor over the mapped file.
struct ByteReader {
    let raw: UnsafeRawBufferPointer
    var pos = 0
    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    @inline(__always)
    mutating func uvarint() throws -> UInt64 {
        // Fast path: ten bytes are left, so no bounds check per byte.
        if pos + 10 <= raw.count {
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + pos
            var x: UInt64 = 0
            var shift: UInt64 = 0
            var i = 0
            while i < 10 {
                let b = base[i]
                x |= UInt64(b & 0x7f) << shift
                i += 1
                if b < 0x80 { pos += i; return x }
                shift += 7
            }
            throw HeapDumpFormatError(description: "varint too long at byte \(pos)")
        }
        var x: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard pos < raw.count else { throw HeapDumpFormatError(description: "dump cut short at byte \(pos)") }
            let b = raw[pos]
            pos += 1
            x |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return x }
            shift += 7
            if shift > 63 { throw HeapDumpFormatError(description: "varint too long at byte \(pos)") }
        }
    }

    mutating func string() throws -> String {
        let n = Int(try uvarint())
        guard n >= 0, pos + n <= raw.count else { throw HeapDumpFormatError(description: "string of \(n) bytes runs past the end at byte \(pos)") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: raw[pos..<pos + n]), as: UTF8.self)
        pos += n
        return s
    }
}
