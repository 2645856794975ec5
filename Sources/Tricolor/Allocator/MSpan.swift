import CTricolor

// MSpan: a run of pages holding objects of one size class (or one large object).
//
// Span metadata lives in FixAlloc memory owned by the heap (never in Swift's heap) and is
// reached through `UnsafeMutablePointer<MSpan>`. The fields the allocation fast path uses
// come first, so they share a cache line.
//
// Allocation state. Go keeps freeIndex (all slots below are allocated) and allocCache
// (the complement of 64 alloc bits, shifted so bit 0 is freeIndex). Tricolor keeps the
// cache window aligned instead, which shortens the fast path to "clear the lowest set
// bit" (one blsr, no shift, no bounds check):
// - freeIndex is the base of the current 64-slot window (a multiple of 64), or ≥ nelems
//   when the span is full;
// - allocCache has bit i set iff slot freeIndex+i is free (bits at or past nelems are 0);
// - slot i is allocated iff i < freeIndex, or (in the window) its allocCache and
//   heldCache bits are 0 (heldCache: see MemProfile.swift),
//   or (past the window) allocBits[i] == 1.
// allocation never writes allocBits; sweeping replaces allocBits with gcmarkBits.
// allocCount is exact for spans in central lists; for a cached span it is recomputed
// (countAllocated) when the span leaves the cache, so the fast path does not count.
// Every free slot's memory is zero: fresh spans are zeroed (or come zero from the OS)
// and the sweeper zeroes each object it frees, so allocation never clears memory.
//
// sweepgen, relative to the heap's sweepgen sg (Go's mspan.sweepgen):
//   sg-2 needs sweeping; sg-1 being swept; sg swept and ready;
//   sg+1 cached before sweep began (needs sweeping); sg+3 swept and then cached.
//
// Invariants (checkInvariants):
// - freeIndex <= nelems; allocCount == number of allocated slots;
// - elemSize * nelems <= npages * pageSize; limit <= startAddr + npages * pageSize;
// - scan spans of a size class have a typeIDs array of nelems entries;
// - windowBase == startAddr + freeIndex × elemSize, windowTypeIDs == typeIDs + freeIndex.

@usableFromInline
enum MSpanState: UInt8 {
    case dead = 0      // free pages or recycled metadata
    case inUse = 1     // holds GC'd objects
    /// Stack memory (Go's mSpanManual): allocated and freed explicitly by the stack
    /// allocator, never swept, never in an mcentral, never marked through.
    case manual = 2
}

@usableFromInline
struct MSpan: @unchecked Sendable {
    // Three cache lines, grouped by who touches them (MemoryLayout<MSpan>.stride is 192
    // and FixAlloc chunks are page-aligned, so each group is one line):
    // -- line 0: the allocating mutator (the inlined fast path reads the first four) --
    @usableFromInline var allocCache: UInt64
    /// Address of slot `freeIndex` (the window's first slot): the fast path adds
    /// tz × elemSize to it, one load and one add fewer than startAddr + (freeIndex + tz) × elemSize.
    @usableFromInline var windowBase: UInt
    @usableFromInline var elemSize: UInt
    /// `typeIDs + freeIndex` (nil for noscan spans).
    @usableFromInline var windowTypeIDs: UnsafeMutablePointer<UInt16>?
    @usableFromInline var freeIndex: UInt
    @usableFromInline var nelems: UInt
    @usableFromInline var allocCount: UInt
    /// Free slots of the current window withheld from the fast path until the next heap
    /// profile sample (see MemProfile.swift); nonzero only while cached.
    var heldCache: UInt64
    // -- line 1: markers (greyObject: span bounds, index, mark table, type ids), read-only
    //    while the span is in use, so marking never shares a line the mutator writes
    //    (filledType aside: written when a mutator caches the span, not per object) --
    @usableFromInline var startAddr: UInt
    var limit: UInt
    @usableFromInline var typeIDs: UnsafeMutablePointer<UInt16>?
    /// The mark table: one byte per slot (`bitmapWords` × 64 bytes), 1 when the slot's
    /// object is marked this cycle, else 0. Go keeps one bit per object (gcmarkBits) and
    /// sets it with an atomic OR, so that two markers never lose each other's bits in a
    /// shared word; a byte of its own needs only a plain store, and the locked
    /// instruction was a third of the marker's time (`lock bts`, perf annotate of
    /// `drain` on binary-trees). Written by markers with relaxed byte stores, by the
    /// allocating mutator for free slots (allocate-black), and by the sweeper, which
    /// packs it into `gcmarkBits` and clears it (`packMarks`). Read relaxed.
    var gcmarkBytes: UnsafeMutablePointer<UInt8>?
    var divMul: UInt32
    @usableFromInline var spanClass: SpanClass
    var state: UInt8                           // MSpanState; atomic store publishes the span
    /// A type id that every slot of the span holds, allocated or free, or 0: set when an
    /// empty span is cached in that type's slot (`fillFreeTypeIDs`), kept while only
    /// that slot allocates from it (which stores that id or none), cleared when a class
    /// slot caches it (its allocations store other types' ids). A type slot that caches
    /// the span again skips the fill. Written (relaxed, `setFilledType`) by the mutator
    /// that caches the span (and owns it then); read by it and, relaxed, by markers
    /// (`greyObject`), which take it instead of the slot's entry in `typeIDs`. A marker
    /// that reads a value about to be cleared still reads the right type: the objects it
    /// can reach were allocated before the clear, and the ones allocated after it are
    /// allocated black (`blackened`) and never queued by a marker. It sits on the
    /// markers' line for that read.
    var filledType: UInt16
    var allocBits: UnsafeMutablePointer<UInt64>?
    /// The mark bits packed from `gcmarkBytes` by the sweeper that owns the span
    /// (`packMarks`), which then swaps them in as the new `allocBits`; the old alloc bits
    /// become the next sweep's array. All zero outside a sweep.
    var gcmarkBits: UnsafeMutablePointer<UInt64>?
    var npages: UInt
    // -- line 2: sweeping, central lists, specials, debugging --
    var next: UnsafeMutablePointer<MSpan>?     // link in an MCentral set
    var allocCountBeforeCache: UInt
    var largeType: UInt32                      // type of a large scan object
    var sweepgen: UInt32                       // atomic: see above
    var blackened: UInt8                       // free slots pre-marked (cached while marking)
    /// Bit 0 (`specialsBit`): the span has records in the specials table (finalizers,
    /// weak handles, cleanups, boxes, heap-profile samples; Runtime/Specials.swift).
    /// Changed with atomic OR/AND under the specials lock; read by the sweeper that owns
    /// the span.
    var hasSpecials: UInt8
    /// 1 while the span sits empty in its class's central list, kept there by the sweeper
    /// instead of going back to the page heap (`SweepShared.keepEmptyPages`); cleared when
    /// a mutator caches it. A span the next sweep finds still empty and still marked kept
    /// went a whole cycle unused and goes back to the page heap. Written by the sweeper
    /// that owns the span, and by the mutator that caches it (and owns it then).
    var keptEmpty: UInt8
    var bitmapWords: UInt16                    // words in allocBits and gcmarkBits
    /// Manual (stack) spans of the stack pool: the first free stack, each free stack's
    /// first word linking the next (Go's manualFreeList). Stack lock.
    var manualFreeList: UInt
    /// Checked mode only: the span's quarantine of freed slots (Collector/Quarantine.swift),
    /// nil until the span's first checked sweep. Written (release) by the sweeper that owns
    /// the span; read (acquire) by `checkRef` on any mutator.
    var quarantine: UnsafeMutableRawPointer?
    /// The debugger's copy of the span's specials (Runtime/Specials.swift, "Debugger
    /// mirror"): `debugSpecialCount` C records (CTricolor's tc_debug_special) in a
    /// malloc'd array of `debugSpecialCap`, nil while the span has none. Written under
    /// the specials lock, never by allocation or marking; read by debuggers (with the
    /// process stopped) and by `checkSpecialsInvariants`.
    var debugSpecials: UnsafeMutablePointer<tc_debug_special>?
    var debugSpecialCount: UInt32
    var debugSpecialCap: UInt32

    var base: UInt { startAddr }
    var isLarge: Bool { spanClass.sizeClass == 0 }
    var endAddr: UInt { startAddr + npages << SizeClassTable.pageShiftU }

    static let empty = MSpan(
        allocCache: 0, windowBase: 0, elemSize: 0, windowTypeIDs: nil, freeIndex: 0, nelems: 0,
        allocCount: 0, heldCache: 0, startAddr: 0, limit: 0, typeIDs: nil, gcmarkBytes: nil,
        divMul: 0, spanClass: SpanClass(raw: 0), state: 0, filledType: 0, allocBits: nil, gcmarkBits: nil,
        npages: 0, next: nil, allocCountBeforeCache: 0, largeType: 0, sweepgen: 0, blackened: 0,
        hasSpecials: 0, keptEmpty: 0, bitmapWords: 0, manualFreeList: 0, quarantine: nil, debugSpecials: nil,
        debugSpecialCount: 0, debugSpecialCap: 0)
}

/// Size class and "no pointers" bit: `sizeClass << 1 | noscan` (Go's spanClass).
@usableFromInline
struct SpanClass: Hashable, Sendable {
    @usableFromInline var raw: UInt8
    @inlinable init(raw: UInt8) { self.raw = raw }
    @inlinable init(sizeClass: Int, noscan: Bool) { raw = UInt8(sizeClass << 1 | (noscan ? 1 : 0)) }
    @inlinable var sizeClass: Int { Int(raw >> 1) }
    @inlinable var noscan: Bool { raw & 1 != 0 }
    static let count = SizeClassTable.numSizeClasses * 2
    static let tiny = SpanClass(sizeClass: 2, noscan: true)   // 16-byte blocks
}

extension SizeClassTable {
    static let pageShiftU: UInt = 13
    static let pageSizeU: UInt = 8192
}

extension UnsafeMutablePointer where Pointee == MSpan {
    /// Go's nextFreeFast: the index of the next free slot in the current window, or
    /// UInt.max when the window is used up.
    @inlinable @inline(__always)
    func nextFreeFast() -> UInt {
        let cache = pointee.allocCache
        if cache == 0 { return UInt.max }
        pointee.allocCache = cache & (cache &- 1)
        return pointee.freeIndex &+ UInt(truncatingIfNeeded: cache.trailingZeroBitCount)
    }

    /// Set the window to start at slot `base` (keeps windowBase and windowTypeIDs in step).
    @inline(__always)
    func setFreeIndex(_ base: UInt) {
        pointee.freeIndex = base
        pointee.windowBase = pointee.startAddr &+ base &* pointee.elemSize
        pointee.windowTypeIDs = pointee.typeIDs.map { $0 + Int(min(base, pointee.nelems)) }
    }

    /// The slot index of the object containing `addr` (Go's divideByElemSize).
    @inline(__always)
    func objectIndex(_ addr: UInt) -> UInt {
        ((addr &- pointee.startAddr) &* UInt(pointee.divMul)) &>> 32
    }

    /// Bits of the 64-slot window at `base` that are real slots (below nelems).
    func validMask(_ base: UInt) -> UInt64 {
        let n = pointee.nelems
        if base >= n { return 0 }
        return n - base >= 64 ? ~0 : (1 << UInt64(n - base)) - 1
    }

    /// Make the window at `base` current (Go's refillAllocCache).
    func loadWindow(_ base: UInt) {
        setFreeIndex(base)
        pointee.allocCache = base < pointee.nelems ? ~pointee.allocBits![Int(base / 64)] & validMask(base) : 0
    }

    /// The next free slot, moving to later windows as needed (Go's nextFreeIndex).
    /// Returns nelems when the span is full.
    func nextFreeIndex() -> UInt {
        let n = pointee.nelems
        if pointee.allocCache == 0 && pointee.freeIndex &+ 64 >= n && pointee.freeIndex >= ((n + 63) & ~63) {
            return n   // full (or the shared empty span): nothing to write
        }
        while pointee.allocCache == 0 {
            let next = pointee.freeIndex &+ 64
            if next >= n {
                setFreeIndex((n + 63) & ~63)
                return n
            }
            loadWindow(next)
        }
        return nextFreeFast()
    }

    /// Where `filledType` lives, for the markers' relaxed load.
    @inline(__always)
    var filledTypeAddress: UnsafeRawPointer {
        UnsafeRawPointer(self) + MemoryLayout<MSpan>.offset(of: \MSpan.filledType)!
    }

    /// Set `filledType` with a relaxed store: a marker may be reading it (ThreadSanitizer
    /// caught the plain store racing with `greyObject`'s load).
    @inline(__always)
    func setFilledType(_ id: UInt16) {
        tc_store16_relaxed(UnsafeMutableRawPointer(mutating: filledTypeAddress), id)
    }

    /// After sweeping: allocation restarts from slot 0.
    func primeAllocCache() { loadWindow(0) }

    /// Give every free slot type id `id` (a span being cached in a type's own slot,
    /// `MCache.firstTypeSlot`): whole free words with one run of stores, the rest slot by
    /// slot. Allocated slots keep theirs.
    func fillFreeTypeIDs(_ id: UInt16) {
        guard let ids = pointee.typeIDs, pointee.filledType != id else { return }
        // An empty span ends with every slot holding `id`; otherwise allocated slots
        // may hold others.
        setFilledType(pointee.allocCount == 0 ? id : 0)
        let n = Int(pointee.nelems)
        let four = UInt64(id) &* 0x0001_0001_0001_0001
        for w in 0..<Int(pointee.bitmapWords) {
            let valid = validMask(UInt(w) * 64)
            var free = ~allocatedWord(w) & valid
            if free == valid {
                // Four ids per 8-byte store, the last few one by one.
                let lo = w * 64
                let count = Swift.min(64, n - lo)
                let raw = UnsafeMutableRawPointer(ids + lo)
                for k in 0..<(count / 4) { raw.storeBytes(of: four, toByteOffset: k &* 8, as: UInt64.self) }
                for k in (count & ~3)..<count { ids[lo + k] = id }
                continue
            }
            while free != 0 {
                ids[w * 64 + free.trailingZeroBitCount] = id
                free &= free &- 1
            }
        }
    }

    /// Number of allocated slots, from the allocation state.
    func countAllocated() -> UInt {
        var n: UInt = 0
        for w in 0..<Int(pointee.bitmapWords) { n += UInt(allocatedWord(w).nonzeroBitCount) }
        return n
    }

    /// Allocation bits of word `w` (slots 64w…64w+63), under the window rule.
    func allocatedWord(_ w: Int) -> UInt64 {
        let lo = UInt(w) * 64
        let base = pointee.freeIndex
        let bits: UInt64
        if lo + 64 <= base { bits = ~0 }
        else if lo == base { bits = ~(pointee.allocCache | pointee.heldCache) }
        else { bits = pointee.allocBits![w] }
        return bits & validMask(lo)
    }

    func isAllocated(_ idx: UInt) -> Bool {
        idx < pointee.nelems && (allocatedWord(Int(idx / 64)) >> UInt64(idx % 64)) & 1 != 0
    }

    /// Whether slot `idx` is marked this cycle (its mark-table byte; the sweep clears the
    /// table, so a swept span reads unmarked).
    @inline(__always)
    func isMarked(_ idx: UInt) -> Bool {
        tc_load8_relaxed(pointee.gcmarkBytes.unsafelyUnwrapped + Int(idx)) != 0
    }

    /// Mark slot `idx` (a relaxed byte store: see `MSpan.gcmarkBytes`).
    @inline(__always)
    func setMarked(_ idx: UInt) {
        tc_store8_relaxed(pointee.gcmarkBytes.unsafelyUnwrapped + Int(idx), 1)
    }

    /// The mark bits of slots 64w…64w+63, packed from the mark table: each 8 bytes of 0
    /// or 1 become 8 bits with one multiply (byte k lands in bit 56+k, and no two
    /// partial products meet in the top byte).
    @inline(__always)
    func markWord(_ w: Int) -> UInt64 {
        let p = pointee.gcmarkBytes.unsafelyUnwrapped + w &* 64
        var bits: UInt64 = 0
        for k in 0..<8 {
            let x = UInt64(tc_load64_relaxed(p + k &* 8))
            bits |= ((x &* 0x0102_0408_1020_4080) &>> 56) &<< UInt64(k &* 8)
        }
        return bits
    }

    /// Sweep: pack the mark table into `gcmarkBits` and clear it for the next cycle
    /// (only the 64-slot groups that had a mark). The caller owns the span and no
    /// marker runs: sweeping starts after mark termination.
    func packMarks() {
        let bits = pointee.gcmarkBits.unsafelyUnwrapped
        let bytes = pointee.gcmarkBytes.unsafelyUnwrapped
        for w in 0..<Int(pointee.bitmapWords) {
            let m = markWord(w)
            bits[w] = m
            if m != 0 { (bytes + w &* 64).initialize(repeating: 0, count: 64) }
        }
    }

    /// Set (`value` 1) or clear (0) the mark-table bytes of the slots set in `slots`, the
    /// word of slots 64w…: allocate-black for free slots (`Heap.preBlacken`,
    /// `uncacheAccounting`). Only free slots' bytes are written, so markers marking the
    /// span's allocated objects meanwhile lose nothing. The stores are relaxed atomics
    /// (8 bytes at a time where 8 slots in a row are set): the conservative stack scan
    /// may read the byte of a free slot of a cached span (a stale stack word) at the
    /// same time, and may mark it, which at worst keeps that zeroed slot out of use
    /// for a cycle.
    func setMarkBytes(word w: Int, slots: UInt64, to value: UInt8) {
        let bytes = pointee.gcmarkBytes.unsafelyUnwrapped + w &* 64
        let eight = UInt(value) &* 0x0101_0101_0101_0101
        for g in 0..<8 {
            let group = (slots &>> UInt64(g &* 8)) & 0xff
            if group == 0 { continue }
            let p = bytes + g &* 8
            if group == 0xff {
                tc_store_relaxed(UnsafeMutableRawPointer(p), eight)
            } else {
                for k in 0..<8 where (group &>> UInt64(k)) & 1 != 0 { tc_store8_relaxed(p + k, value) }
            }
        }
    }


    func checkInvariants() {
        let s = pointee
        runtimeCheck(s.freeIndex % 64 == 0, "span: window base not a multiple of 64")
        runtimeCheck(s.elemSize * s.nelems <= s.npages << SizeClassTable.pageShiftU, "span: slots overflow pages")
        if !s.isLarge && !s.spanClass.noscan { runtimeCheck(s.typeIDs != nil, "span: scan span without type array") }
        runtimeCheck(s.allocCache & ~validMask(s.freeIndex) == 0, "span: allocCache has bits past nelems")
        runtimeCheck(s.windowBase == s.startAddr &+ s.freeIndex &* s.elemSize, "span: windowBase out of step with freeIndex")
        if s.keptEmpty != 0 { runtimeCheck(!s.isLarge && s.allocCount == 0, "span: kept empty in its class but holds \(s.allocCount) objects") }
        if let t = s.typeIDs, s.freeIndex <= s.nelems { runtimeCheck(s.windowTypeIDs == t + Int(s.freeIndex), "span: windowTypeIDs out of step with freeIndex") }
        if s.filledType != 0, let t = s.typeIDs {
            for i in 0..<Int(s.nelems) where t[i] != s.filledType {
                runtimeFatal("invariant violated: span filled with type id \(s.filledType) has \(t[i]) in slot \(i)")
            }
        }
    }
}
