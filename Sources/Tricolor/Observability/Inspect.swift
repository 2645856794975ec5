import CTricolor
import Glibc

// Address inspection: what the runtime knows about any address, the way a debugger
// would print it (Go has no single call for this; viewcore's `object` and Delve's
// `examinemem` come closest). Everything is read from the runtime's own tables:
//
//   address → reservation? → arena (mapped?) → page → span (spans table) →
//   span state → slot index (divMul) → alloc bits, mark bits, type id → type layout,
//   and the specials table: the object's lifecycle records, and its heap-profile
//   record for the sampled allocation stack.
//
// `Heap.inspect(_:)` stops the world and holds the sweepers off for the read (as
// `checkHeapInvariants` does), so the answer is one consistent picture: no span changes
// state, no cached span's window moves, no slot is swept while it is read. The
// inspection itself (`describeStopped`) is also used by heap dumps and the fatal-error
// report, which already have the world stopped or cannot stop it (see Fatal.swift).
//
// Sweep status, in Go's words (mspan.sweepgen against mheap.sweepgen sg):
//   sg-2 "needs sweeping" · sg-1 "being swept" · sg "swept" ·
//   sg+1 "cached" (before sweeping began: needs sweeping) · sg+3 "cached" (swept).
// An object in a span that needs sweeping is live only if it is marked: an unmarked
// allocated slot there is garbage the next sweep frees ("unreachable").
//
// Invariants: an `AddressInfo` has a span iff its kind is object, freeSlot, stack or
// spanTail; it has an object iff its kind is object or freeSlot.

/// Everything the runtime knows about one address: see `Heap.inspect(_:)`.
/// `description` prints it like a debugger; it is `Codable`, so `JSONEncoder` turns it
/// into JSON for scripts.
public struct AddressInfo: Sendable, Codable, Equatable, CustomStringConvertible {
    /// What the address is.
    public enum Kind: String, Sendable, Codable {
        /// Outside the heap's address-space reservation and not runtime metadata.
        case notInHeap = "not in the heap"
        /// Inside the reservation, in an arena not mapped yet.
        case unmappedArena = "unmapped arena"
        /// Inside a mapped arena, in a page the heap has not grown into yet.
        case ungrownPage = "reserved page (not grown into yet)"
        /// A free page of the page heap (maybe returned to the OS).
        case freePage = "free page"
        /// Inside a heap object (at its start or interior).
        case object = "heap object"
        /// A slot of an in-use span that holds no object now.
        case freeSlot = "free slot"
        /// Past the last slot of an in-use span (the span's tail waste).
        case spanTail = "span tail (past the last slot)"
        /// Inside a stack span (shadow stacks; Go's mSpanManual).
        case stack = "stack memory"
        /// Runtime metadata: span structures, bitmaps, arena tables, the page allocator.
        case metadata = "runtime metadata"
        /// The shared address of every zero-byte allocation (Go's zerobase).
        case zeroBase = "zero-size object (zerobase)"
    }

    /// The address inspected.
    public var address: UInt
    /// What it is.
    public var kind: Kind
    /// A one-line elaboration (which metadata, why an object is unreachable, …).
    public var note: String = ""
    /// The 64 MiB arena holding the address (index in the reservation, first byte), if in the heap.
    public var arena: ArenaInfo?
    /// The span holding the address, if any.
    public var span: SpanInfo?
    /// The object or slot the address falls in, if in an object span.
    public var object: ObjectInfo?
    /// The heap profile's sampled allocation stack (return addresses, innermost first),
    /// when the heap profile sampled this object.
    public var allocationStack: [UInt]?
    /// The sampled stack symbolized (function names, innermost first). Filled by
    /// `TricolorProfiling`'s `Heap.inspectSymbolized(_:)`; nil from `inspect(_:)`.
    public var allocationFrames: [String]?
    /// The lifecycle records of the object (Runtime/Specials.swift), in the order the
    /// runtime keeps them (finalizer, weak handle, cleanups by id, box): "finalizer",
    /// "weak handle 0x…" (the handle object), "cleanup #N (argument 0x…)", "Swift object
    /// box". A heap-profile sample is not listed: it shows as `allocationStack`. gdb's
    /// `tricolor object` prints the same list from the span's C copy of its records.
    public var specials: [String] = []

    /// Arena of an address.
    public struct ArenaInfo: Sendable, Codable, Equatable {
        /// Index of the arena in the heap's reservation.
        public var index: Int
        /// First byte of the arena.
        public var base: UInt
        /// Whether the arena's memory and metadata are mapped.
        public var mapped: Bool
    }

    /// A span, as Go's mspan describes it.
    public struct SpanInfo: Sendable, Codable, Equatable {
        /// First byte of the span.
        public var base: UInt
        /// Pages (8 KiB) in the span.
        public var pages: Int
        /// "in use", "stack" or "dead" (Go's mSpanInUse, mSpanManual, mSpanDead).
        public var state: String
        /// Go's spanClass: size class << 1 | noscan.
        public var spanClass: Int
        /// The size class (0: a large object's own span, or a stack span).
        public var sizeClass: Int
        /// Whether the span holds pointer-free objects only (never scanned).
        public var noscan: Bool
        /// Bytes per slot (a large object's pages).
        public var elemSize: Int
        /// Slots in the span (Go's nelems).
        public var nelems: Int
        /// Slots allocated now (Go's allocCount; recomputed for a cached span).
        public var allocCount: Int
        /// "swept", "needs sweeping", "being swept", "cached" (see the file comment); empty for stacks.
        public var sweepStatus: String
        /// The span's sweepgen and the heap's, as Go keeps them.
        public var sweepgen: UInt32
        /// The heap's sweep generation when the span was read.
        public var heapSweepgen: UInt32
        /// The mutator whose cache holds the span, if one does.
        public var cachedByMutator: Int?
    }

    /// An object slot.
    public struct ObjectInfo: Sendable, Codable, Equatable {
        /// First byte of the object.
        public var base: UInt
        /// Offset of the address into the object (0 for a pointer to its start).
        public var offset: Int
        /// Slot index in the span.
        public var index: Int
        /// Bytes the object occupies (its slot, or a large object's exact size).
        public var size: Int
        /// The slot holds an object (allocated and, in a span needing sweeping, marked).
        public var allocated: Bool
        /// The slot's mark bit: reached by the current (or just finished) cycle.
        public var marked: Bool
        /// Registered type name; "<bytes>" for pointer-free memory whose type is not recorded.
        public var typeName: String
        /// Registry index of the type (0: not recorded).
        public var typeID: Int
        /// Bytes per element of the type.
        public var typeSize: Int
        /// Words of the element that hold pointers.
        public var pointerWords: [Int]
        /// Allocated as an array (`allocateArray`).
        public var isArray: Bool
        /// Elements of the type the slot holds (1 for a single object).
        public var count: Int
        /// A tiny block: 16 bytes holding several pointer-free objects under 16 bytes.
        public var tinyBlock: Bool
    }

    /// A debugger-style description over several lines.
    public var description: String {
        var out = "\(hex(address)): \(kind.rawValue)"
        if !note.isEmpty { out += " (\(note))" }
        out += "\n"
        if let a = arena {
            out += "  arena   #\(a.index) at \(hex(a.base))\(a.mapped ? "" : " (not mapped)")\n"
        }
        if let s = span {
            out += "  span    \(hex(s.base))-\(hex(s.base + UInt(s.pages) * 8192)) \(s.pages) page\(s.pages == 1 ? "" : "s"), \(s.state)"
            if s.state != "stack" {
                out += ", class \(s.sizeClass)\(s.noscan ? " noscan" : "") (spanclass \(s.spanClass)), elemsize \(s.elemSize), nelems \(s.nelems), allocCount \(s.allocCount)"
                out += "\n          sweepgen \(s.sweepgen) (heap \(s.heapSweepgen)): \(s.sweepStatus)"
                if let m = s.cachedByMutator { out += ", in mutator \(m)'s mcache" }
            }
            out += "\n"
        }
        if let o = object {
            out += "  object  \(hex(o.base)) + \(o.offset), slot \(o.index), \(o.size) bytes, \(o.allocated ? "allocated" : "free"), \(o.marked ? "marked" : "unmarked")\n"
            if o.allocated || o.typeID != 0 {
                var t = "  type    \(o.isArray ? "[\(o.count)]" : "")\(o.typeName)"
                if o.typeID != 0 { t += " (#\(o.typeID), \(o.typeSize) bytes, pointer words \(o.pointerWords))" }
                if o.tinyBlock { t += ", tiny block" }
                out += t + "\n"
            }
        }
        if let st = allocationStack {
            out += "  allocated at (sampled):\n"
            if let f = allocationFrames, !f.isEmpty {
                for line in f { out += "    \(line)\n" }
            } else {
                for pc in st { out += "    \(hex(pc))\n" }
            }
        }
        out += "  specials \(specials.isEmpty ? "none" : specials.joined(separator: ", "))\n"
        return out
    }
}

func hex(_ v: UInt) -> String { "0x" + String(v, radix: 16) }

/// Go's words for a span's sweep state.
func sweepStatusName(span g: UInt32, heap sg: UInt32) -> String {
    switch g {
    case sg &- 2: return "needs sweeping"
    case sg &- 1: return "being swept"
    case sg: return "swept"
    case sg &+ 1: return "cached (needs sweeping)"
    case sg &+ 3: return "cached"
    default: return "sweepgen \(g) out of step"
    }
}

extension PageAlloc {
    /// Whether free page `page` has been returned to the OS.
    func isScavenged(_ page: Int) -> Bool { scavenged[page / 64] >> UInt64(page % 64) & 1 != 0 }
}

extension Heap {
    /// Everything the runtime knows about `address`: which arena it is in (or "not in
    /// the heap"), its span (base, pages, state, span class, element size, slots,
    /// allocated count, sweep status in Go's words), the object or slot it falls in
    /// (base, offset, index, allocated or free, marked this cycle, type and layout,
    /// element count), the heap profile's sampled allocation stack when the object was
    /// sampled, and its specials. Stack memory, runtime metadata and free pages get
    /// answers of their own. `print(heap.inspect(p))` reads like a debugger's output.
    ///
    /// Stops the world briefly (and holds the background sweeper off), so the answer is
    /// consistent; use `inspect(_:)` with an array to inspect many addresses under one
    /// stop. Safe to call from any thread, attached or not.
    public func inspect(_ address: UInt) -> AddressInfo {
        inspect([address])[0]
    }

    /// `inspect(_:)` for the object `ref` names.
    public func inspect(_ ref: Ref) -> AddressInfo { inspect(ref.address) }

    /// `inspect(_:)` for several addresses, under one stop of the world.
    public func inspect(_ addresses: [UInt]) -> [AddressInfo] {
        withInspectionStop {
            let cached = cachedSpans()
            return addresses.map { describeStopped($0, cached: cached, locking: true) }
        }
    }

    /// Run `body` with the world stopped and no sweep in flight (pause-like state).
    func withInspectionStop<R>(_ body: () throws -> R) rethrows -> R {
        try withWorldStopped {
            let blocked = sweep.sweepBlocked.load(.relaxed)
            sweep.sweepBlocked.store(1, .releasing)
            while sweep.activeSweepers.load(.acquiring) != 0 { tc_yield() }
            defer { sweep.sweepBlocked.store(blocked, .releasing) }
            return try body()
        }
    }

    /// Span → id of the mutator whose cache holds it. World stopped.
    func cachedSpans() -> [UInt: Int] {
        var out: [UInt: Int] = [:]
        forEachMutator { m in
            let spans = m.pointee.mcache.pointee.spans
            for i in 0..<MCache.slotCount where spans[i] != emptySpan {
                out[UInt(bitPattern: spans[i])] = m.pointee.id
            }
        }
        return out
    }

    /// Take `l`, or only try to when `locking` is false (the fatal path); false if not taken.
    func acquire(_ l: RuntimeLock, _ locking: Bool) -> Bool {
        if locking { l.lock(); return true }
        return l.tryLock()
    }

    /// The inspection itself. The world is stopped and no sweep is in flight, or
    /// (`locking == false`, the fatal path) nothing is guaranteed and locks are only tried.
    func describeStopped(_ p: UInt, cached: [UInt: Int], locking: Bool) -> AddressInfo {
        var info = AddressInfo(address: p, kind: .notInHeap)
        if p == zeroBase { info.kind = .zeroBase; return info }
        let off = p &- arenaBase
        guard off < reservedBytes else {
            if let what = metadataRegion(containing: p, locking: locking) {
                info.kind = .metadata
                info.note = what
            }
            return info
        }
        let ai = Int(off >> HeapArena.logBytes)
        let arenaMapped = tc_load_acquire(UnsafeRawPointer(arenas + ai)) != 0
        info.arena = .init(index: ai, base: arenaBase + UInt(ai) << HeapArena.logBytes, mapped: arenaMapped)
        guard arenaMapped else { info.kind = .unmappedArena; return info }
        guard let s = spanOfAcquiring(p) else {
            let page = Int(off >> SizeClassTable.pageShiftU)
            if acquire(heapLock, locking) {
                defer { heapLock.unlock() }
                if page >= pages.grownPages {
                    info.kind = .ungrownPage
                } else {
                    info.kind = .freePage
                    info.note = pages.isScavenged(page) ? "returned to the OS (scavenged)" : "resident"
                }
            } else {
                info.kind = .freePage
                info.note = "heap lock busy: page state not read"
            }
            return info
        }
        let sg = sweepgen
        let span = spanInfo(s, sg: sg, cached: cached)
        if s.pointee.state == MSpanState.manual.rawValue {
            info.kind = .stack
            info.note = stackOwner(p, locking: locking)
            info.span = span
            return info
        }
        guard s.pointee.state == MSpanState.inUse.rawValue else { info.kind = .freePage; info.note = "dead span"; return info }
        if p >= s.pointee.limit {
            info.kind = .spanTail
            info.span = span
            return info
        }
        let idx = s.pointee.isLarge ? 0 : s.objectIndex(p)
        let base = s.pointee.startAddr + idx * s.pointee.elemSize
        let g = s.loadSweepgen()
        let unswept = g == sg &- 2 || g == sg &+ 1
        let allocBit = s.isAllocated(idx)
        let marked = s.isMarked(idx)
        let live = allocBit && (!unswept || marked)
        var tid: UInt16 = 0
        if s.pointee.isLarge { tid = UInt16(truncatingIfNeeded: s.pointee.largeType) }
        else if let ids = s.pointee.typeIDs { tid = tc_load16_relaxed(ids + Int(idx)) }
        let id = Int(tid & ~arrayTypeBit)
        let size = s.pointee.isLarge ? Int(s.pointee.limit - s.pointee.startAddr) : Int(s.pointee.elemSize)
        let tsize = id != 0 ? Int(types[id].size) : size
        var ptrs: [Int] = []
        if id != 0, let pw = types[id].ptrWords { ptrs = (0..<types[id].numPtrWords).map { Int(pw[$0]) } }
        let name = id == 0 ? "<bytes>" : (acquire(typesLock, locking) ? { defer { typesLock.unlock() }; return id < typeNames.count ? typeNames[id] : "<type \(id)>" }() : "<type \(id)>")
        let isArray = tid & arrayTypeBit != 0
        info.object = .init(base: base, offset: Int(p - base), index: Int(idx), size: size, allocated: live, marked: marked,
                            typeName: name, typeID: id, typeSize: tsize, pointerWords: ptrs, isArray: isArray,
                            count: tsize == 0 ? 0 : (isArray || s.pointee.isLarge ? size / tsize : 1),
                            tinyBlock: s.pointee.spanClass == .tiny)
        if live {
            info.kind = .object
        } else {
            info.kind = .freeSlot
            if allocBit && unswept { info.note = "unreachable: allocated, unmarked, freed when its span is swept" }
        }
        var bucket: Int? = nil
        if live, s.specialsBits & UnsafeMutablePointer<MSpan>.specialsBit != 0, acquire(specials.lock, locking) {
            let list = (specials.bySpan[s.pointee.startAddr] ?? []).filter { $0.addr >= base && $0.addr < base &+ s.pointee.elemSize }
            specials.lock.unlock()
            // The profile sample shows as the allocation stack, not as a record.
            info.specials = list.filter { $0.addr == base && $0.kind != .profile }.map(describeSpecial)
            if let sample = list.first(where: { $0.kind == .profile }) { bucket = Int(sample.arg) }
        }
        // The profiler's lock ranks before the specials lock: taken after it is released
        // (buckets are only appended, so the index stays valid).
        if let b = bucket, acquire(memProfiler.lock, locking) {
            info.allocationStack = memProfiler.buckets[b].key.stack
            memProfiler.lock.unlock()
        }
        info.span = span
        return info
    }

    func spanInfo(_ s: UnsafeMutablePointer<MSpan>, sg: UInt32, cached: [UInt: Int]) -> AddressInfo.SpanInfo {
        let st = s.pointee.state
        let manual = st == MSpanState.manual.rawValue
        let g = s.loadSweepgen()
        let cachedBy = cached[UInt(bitPattern: s)]
        let count = manual ? Int(s.pointee.allocCount) : (cachedBy != nil ? Int(s.countAllocated()) : Int(s.pointee.allocCount))
        return .init(base: s.pointee.startAddr, pages: Int(s.pointee.npages),
                     state: st == MSpanState.inUse.rawValue ? "in use" : manual ? "stack" : "dead",
                     spanClass: Int(s.pointee.spanClass.raw), sizeClass: s.pointee.spanClass.sizeClass,
                     noscan: s.pointee.spanClass.noscan, elemSize: Int(s.pointee.elemSize), nelems: Int(s.pointee.nelems),
                     allocCount: count, sweepStatus: manual ? "" : sweepStatusName(span: g, heap: sg),
                     sweepgen: manual ? 0 : g, heapSweepgen: sg, cachedByMutator: cachedBy)
    }

    /// Whose shadow stack `p` lies in, if any mutator's. World stopped (or best effort).
    func stackOwner(_ p: UInt, locking: Bool) -> String {
        var out = "a free stack, or a stack cached for reuse"
        forEachMutator { m in
            let lo = UInt(bitPattern: m.pointee.stack)
            let hi = lo + UInt(m.pointee.stackCap * 8)
            if p >= lo && p < hi {
                let slot = Int(p - lo) / 8
                out = "mutator \(m.pointee.id)'s shadow stack, slot \(slot) of \(m.pointee.stackCap)" + (slot < m.pointee.stackTop ? " (in use)" : " (above the top)")
            }
        }
        return out
    }

    /// Which runtime metadata `p` lies in, if any: span structures, bitmap chunks, arena
    /// page tables, the page allocator's bitmaps, the type registry.
    func metadataRegion(containing p: UInt, locking: Bool) -> String? {
        func within(_ base: UnsafeRawPointer?, _ bytes: Int) -> Bool {
            guard let b = base else { return false }
            let lo = UInt(bitPattern: b)
            return p >= lo && p < lo + UInt(bytes)
        }
        if within(UnsafeRawPointer(types), maxTypes * MemoryLayout<TypeInfo>.stride) { return "type registry" }
        for i in 0..<numArenas {
            if let a = tc_load_acquire(UnsafeRawPointer(arenas + i)) as UInt?, a != 0,
               let h = UnsafeMutablePointer<HeapArena>(bitPattern: a),
               within(UnsafeRawPointer(h.pointee.spans), HeapArena.pagesPerArena * 8) { return "page→span table of arena #\(i)" }
        }
        guard acquire(heapLock, locking) else { return nil }
        defer { heapLock.unlock() }
        let chunkWords = PageAlloc.chunkPages / 64
        if within(UnsafeRawPointer(pages.bitmap), pages.numChunks * chunkWords * 8) { return "page allocator bitmap" }
        if within(UnsafeRawPointer(pages.scavenged), pages.numChunks * chunkWords * 8) { return "page allocator scavenged bitmap" }
        if within(UnsafeRawPointer(pages.tree), 2 * pages.numChunks * MemoryLayout<PallocSum>.stride) { return "page allocator summary tree" }
        func inChunks(_ f: FixAlloc) -> Bool {
            var r = f.chunks
            while let c = r {
                if within(UnsafeRawPointer(c.pointee.base), FixAlloc.chunkBytes) { return true }
                r = c.pointee.next
            }
            return false
        }
        if inChunks(spanAlloc) { return "span structures (FixAlloc)" }
        for b in 0..<MetaAlloc.numBuckets where inChunks(meta.buckets[b]) {
            return "span bitmaps and type-id arrays (\(meta.buckets[b].size)-byte blocks)"
        }
        return nil
    }
}
