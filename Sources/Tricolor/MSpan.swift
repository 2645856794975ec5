import CTricolor

// MSpan: a run of pages holding objects of one size class (or one large object).
//
// Span metadata lives in FixAlloc memory owned by the heap (never in Swift's heap) and is
// reached through `UnsafeMutablePointer<MSpan>`. The fields the allocation fast path uses
// come first, so they share a cache line.
//
// Allocation state (Go's scheme, runtime/mbitmap.go):
// - slot i is allocated iff i < freeIndex or allocBits[i] == 1;
// - allocCache holds the complement of the 64 allocBits starting at freeIndex rounded down
//   to 64, shifted so bit 0 is slot freeIndex: count-trailing-zeros finds the next free slot;
// - allocation never writes allocBits; sweeping replaces allocBits with gcmarkBits.
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
// - scan spans of a size class have a typeIDs array of nelems entries.

@usableFromInline
enum MSpanState: UInt8 {
    case dead = 0      // free pages or recycled metadata
    case inUse = 1     // holds GC'd objects
    case manual = 2    // runtime-managed memory (reserved for stacks)
}

@usableFromInline
struct MSpan: @unchecked Sendable {
    // -- fast path --
    @usableFromInline var allocCache: UInt64
    @usableFromInline var freeIndex: UInt
    @usableFromInline var nelems: UInt
    @usableFromInline var startAddr: UInt
    @usableFromInline var elemSize: UInt
    @usableFromInline var allocCount: UInt
    @usableFromInline var typeIDs: UnsafeMutablePointer<UInt16>?
    // -- the rest --
    var allocBits: UnsafeMutablePointer<UInt64>?
    var gcmarkBits: UnsafeMutablePointer<UInt64>?
    var next: UnsafeMutablePointer<MSpan>?     // link in an MCentral set
    var npages: UInt
    var limit: UInt
    var allocCountBeforeCache: UInt
    var largeType: UInt32                      // type of a large scan object
    var sweepgen: UInt32                       // atomic: see above
    var divMul: UInt32
    @usableFromInline var spanClass: SpanClass
    var state: UInt8                           // MSpanState; atomic store publishes the span
    var bitmapWords: UInt16                    // words in allocBits and gcmarkBits

    var base: UInt { startAddr }
    var isLarge: Bool { spanClass.sizeClass == 0 }
    var endAddr: UInt { startAddr + npages << SizeClassTable.pageShiftU }

    static let empty = MSpan(
        allocCache: 0, freeIndex: 0, nelems: 0, startAddr: 0, elemSize: 0, allocCount: 0,
        typeIDs: nil, allocBits: nil, gcmarkBits: nil, next: nil, npages: 0, limit: 0,
        allocCountBeforeCache: 0, largeType: 0, sweepgen: 0, divMul: 0,
        spanClass: SpanClass(raw: 0), state: 0, bitmapWords: 0)
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
    /// Go's nextFreeFast: the next free slot from allocCache, or 0 when the cache is
    /// exhausted or the slot would need a cache refill.
    @inlinable @inline(__always)
    func nextFreeFast() -> UInt {
        let cache = pointee.allocCache
        let bit = UInt(truncatingIfNeeded: cache.trailingZeroBitCount)
        let idx = pointee.freeIndex &+ bit
        // bit == 64 (empty cache) also fails: freeIndex+64 is either past nelems or
        // crosses a 64-slot boundary, both caught below.
        let next = idx &+ 1
        let nelems = pointee.nelems
        if bit < 64 && idx < nelems && (next & 63 != 0 || next == nelems) {
            pointee.allocCache = (cache &>> UInt64(bit)) &>> 1
            pointee.freeIndex = next
            pointee.allocCount &+= 1
            return pointee.startAddr &+ idx &* pointee.elemSize
        }
        return 0
    }

    /// The slot index of the object containing `addr` (Go's divideByElemSize).
    @inline(__always)
    func objectIndex(_ addr: UInt) -> UInt {
        ((addr &- pointee.startAddr) &* UInt(pointee.divMul)) &>> 32
    }

    /// Go's refillAllocCache: complement of the 64 alloc bits starting at slot 64*word.
    func refillAllocCache(word: Int) {
        pointee.allocCache = word < Int(pointee.bitmapWords) ? ~pointee.allocBits![word] : 0
    }

    /// Go's nextFreeIndex: advances freeIndex to the next free slot (== nelems if full).
    func nextFreeIndex() -> UInt {
        var i = pointee.freeIndex
        let n = pointee.nelems
        if i == n { return n }
        var bit = UInt(pointee.allocCache.trailingZeroBitCount)
        while bit == 64 {
            i = (i + 64) & ~63
            if i >= n { pointee.freeIndex = n; return n }
            refillAllocCache(word: Int(i / 64))
            bit = UInt(pointee.allocCache.trailingZeroBitCount)
        }
        let result = i + bit
        if result >= n { pointee.freeIndex = n; return n }
        pointee.allocCache = (pointee.allocCache &>> UInt64(bit)) &>> 1
        i = result + 1
        if i % 64 == 0 && i != n { refillAllocCache(word: Int(i / 64)) }
        pointee.freeIndex = i
        return result
    }

    /// Prepare allocCache for allocation starting at freeIndex.
    func primeAllocCache() {
        let fi = pointee.freeIndex
        refillAllocCache(word: Int(fi / 64))
        pointee.allocCache = pointee.allocCache &>> UInt64(fi % 64)
    }

    func isAllocated(_ idx: UInt) -> Bool {
        idx < pointee.freeIndex || (pointee.allocBits![Int(idx / 64)] >> UInt64(idx % 64)) & 1 != 0
    }

    @inline(__always)
    func isMarked(_ idx: UInt) -> Bool {
        (pointee.gcmarkBits.unsafelyUnwrapped[Int(idx &>> 6)] &>> UInt64(idx & 63)) & 1 != 0
    }

    /// Set the mark bit; returns false if it was already set. Single marker (the world is
    /// stopped), so a plain read-modify-write.
    @inline(__always)
    func setMarked(_ idx: UInt) -> Bool {
        let w = pointee.gcmarkBits.unsafelyUnwrapped + Int(idx &>> 6)
        let bit: UInt64 = 1 &<< UInt64(idx & 63)
        let old = w.pointee
        if old & bit != 0 { return false }
        w.pointee = old | bit
        return true
    }

    func countMarked() -> UInt {
        var n = 0
        for w in 0..<Int(pointee.bitmapWords) { n += pointee.gcmarkBits![w].nonzeroBitCount }
        return UInt(n)
    }

    func checkInvariants() {
        let s = pointee
        precondition(s.freeIndex <= s.nelems, "span: freeIndex past nelems")
        precondition(s.elemSize * s.nelems <= s.npages << SizeClassTable.pageShiftU, "span: slots overflow pages")
        if !s.isLarge && !s.spanClass.noscan { precondition(s.typeIDs != nil, "span: scan span without type array") }
        var count: UInt = 0
        for i in 0..<s.nelems where isAllocated(i) { count += 1 }
        precondition(count == s.allocCount, "span: allocCount \(s.allocCount) but \(count) slots allocated")
    }
}
