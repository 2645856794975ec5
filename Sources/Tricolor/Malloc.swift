import CTricolor
import Glibc

// Memory allocator (Go's malloc.go).
//
// The allocator works in runs of pages. Small allocation sizes (up to and including
// 32 KiB) are rounded to one of 67 size classes, each of which has its own set of
// objects of exactly that size. Any free page of memory can be split into a set of
// objects of one size class, which are then managed with a free bitmap.
//
// The data structures (Go's names, Tricolor's files):
//
//      FixAlloc:  a free-list allocator for fixed-size off-heap objects, used to
//                 manage the allocator's own metadata (Platform/SysMemory.swift).
//      MHeap:     the page heap, managed at 8 KiB page granularity (Allocator/MHeap,
//                 PageAlloc, HeapArena).
//      MSpan:     a run of in-use pages managed by the MHeap (Allocator/MSpan).
//      MCentral:  all spans of a given size class (Allocator/MCentral).
//      MCache:    a per-mutator cache of spans with free space (Allocator/MCache).
//
// Allocating a small object proceeds up a hierarchy of caches:
//
//  1. Round the size up to one of the small size classes and look in this mutator's
//     MCache for the span of that class. Scan the span's free bitmap window
//     (`allocCache`) for a free slot; if there is one, take it. All of this is the
//     inlined fast path below: no lock, no atomic read-modify-write, no reference
//     counting, a handful of instructions in the caller.
//  2. If the window is empty, the outlined slow path (Allocator/MallocSlow) loads the
//     next window of the span; if the span is full, it gets a new span of the
//     required size class from the MCentral's list of spans with free space
//     (`MCache.refill`). Obtaining a whole span amortizes the cost of locking the
//     MCentral.
//  3. If the MCentral's list is empty, it sweeps an unswept span of its class, and
//     failing that obtains a run of pages from the MHeap to use for the span.
//  4. If the MHeap is empty or has no runs of pages large enough, it allocates a new
//     group of pages (at least 4 MiB) from the arena reserved at heap creation.
//     Allocating in runs of pages amortizes the cost of talking to the OS.
//
// Sweeping an MSpan and freeing objects on it proceeds up a similar hierarchy:
//
//  1. If the span was swept in response to allocation, it is returned to the MCache
//     to satisfy the allocation.
//  2. Otherwise, if it still has allocated objects, it is placed on the MCentral
//     free list for its size class.
//  3. Otherwise, if all objects in the span are free, its pages are returned to the
//     MHeap and the span is dead.
//
// Allocating and freeing a large object (over 32 KiB) uses the MHeap directly,
// bypassing the MCache and MCentral (Allocator/MallocLarge). Pointer-free objects under
// 16 bytes share 16-byte blocks (Allocator/MallocTiny).
//
// Memory is always handed out zeroed: spans are zeroed when they are swept, and pages
// fresh from the OS are zero already. Objects allocated while the collector marks are
// black (Collector/GC.swift): their span's free slots were pre-marked at refill.

extension Mutator {
    // MARK: allocation

    /// Allocate one zeroed object of type `t`. Traps with "out of memory" when the heap
    /// cannot grow (Go's behaviour); see `tryAllocate`.
    @inlinable @inline(__always)
    public func allocate(_ t: ObjectType) -> Ref {
        if _fastPath(t.isSmall) {
            // Go's nextFreeFast, inline: take the lowest free slot of the cache window.
            let s = cache[t.cacheSlot]
            let c = s.pointee.allocCache
            if _fastPath(c != 0) {
                s.pointee.allocCache = c & (c &- 1)
                let i = c.trailingZeroBitCount
                if t.storesTypeID { s.pointee.windowTypeIDs.unsafelyUnwrapped[i] = t.id }
                return Ref(address: s.pointee.windowBase &+ UInt(truncatingIfNeeded: i) &* s.pointee.elemSize)
            }
        }
        return Ref(address: allocateSlow(t))
    }

    /// The typed slow path takes the packed type word only, so that the caller's loop
    /// keeps one register for the type (see `ObjectType.bits`).
    @usableFromInline @inline(never)
    func allocateSlow(_ t: ObjectType) -> UInt {
        checkTypeOwner(t)
        return allocateSlow(size: t.size, typeID: t.id, noscan: !t.hasPointers, canFail: false,
                            cachedSlot: t.isSmall ? t.cacheSlot : nil)
    }

    /// Like `allocate`, but nil instead of a fatal error when memory cannot be had.
    public func tryAllocate(_ t: ObjectType) -> Ref? {
        checkTypeOwner(t)
        let p = allocateSlow(size: t.size, typeID: t.id, noscan: !t.hasPointers, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Allocate `count` consecutive zeroed objects of type `t` as one object. An array
    /// always has a slot of its own (never a share of a tiny block), so `count(of:)`
    /// never reaches into another object.
    public func allocateArray(_ t: ObjectType, count: Int) -> Ref {
        checkTypeOwner(t)
        let (size, overflow) = t.size.multipliedReportingOverflow(by: count)
        if count < 0 || overflow { runtimeFatal("allocation size out of range: \(count) elements of \(t.size) bytes") }
        return Ref(address: allocateSlow(size: size, typeID: t.id | arrayTypeBit, noscan: !t.hasPointers, canFail: false))
    }

    /// Like `allocateArray(_:count:)`, but nil instead of a fatal error when memory cannot be
    /// had or `count` is negative or too large.
    public func tryAllocateArray(_ t: ObjectType, count: Int) -> Ref? {
        checkTypeOwner(t)
        let (size, overflow) = t.size.multipliedReportingOverflow(by: count)
        if count < 0 || overflow { return nil }
        let p = allocateSlow(size: size, typeID: t.id | arrayTypeBit, noscan: !t.hasPointers, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Allocate `size` zeroed bytes that hold no pointers (Go's mallocgc with a nil type).
    /// Sizes under 16 bytes share 16-byte blocks (the tiny allocator), except in checked
    /// mode, where each gets a slot of its own so that its bounds are checked exactly.
    @inlinable @inline(__always)
    public func allocateBytes(_ size: Int) -> Ref {
        if _fastPath(size >= 16 && size <= 1016) {
            // Up to 256 bytes Go's classes step by 8 to 32, then by 16: arithmetic that
            // folds away when the size is a constant; the table above that.
            let sc = size <= 256 ? Mutator.classUpTo256(size) : Int(state.pointee.heap.sizeToClass8[(size &+ 7) &>> 3])
            let s = cache[sc &<< 1 | 1]
            let c = s.pointee.allocCache
            if _fastPath(c != 0) {
                s.pointee.allocCache = c & (c &- 1)
                return Ref(address: s.pointee.windowBase &+ UInt(truncatingIfNeeded: c.trailingZeroBitCount) &* s.pointee.elemSize)
            }
        }
        return Ref(address: allocateSlow(size: size, typeID: 0, noscan: true, canFail: false))
    }

    /// Go's size class for 16 ≤ size ≤ 256 (classes 2–18: 16, 24, 32, 48, 64, … 256).
    @inlinable @inline(__always)
    static func classUpTo256(_ size: Int) -> Int {
        size <= 32 ? (size &+ 7) &>> 3 : ((size &+ 15) &>> 4) &+ 2
    }

    /// Like `allocateBytes(_:)`, but nil instead of a fatal error when memory cannot be had or
    /// `size` is negative or too large.
    public func tryAllocateBytes(_ size: Int) -> Ref? {
        let p = allocateSlow(size: size, typeID: 0, noscan: true, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

}

extension Mutator {
    /// Traps unless `t` was registered with this mutator's heap: one compare, on the
    /// typed slow paths in every mode (see `Heap.typeTag`).
    @inline(__always)
    func checkTypeOwner(_ t: ObjectType) {
        if _slowPath(t.heapTag != state.pointee.typeTag) { foreignType(t) }
    }

    @inline(never)
    func foreignType(_ t: ObjectType) -> Never {
        runtimeFatal("allocate: type #\(t.id) (\(t.size) bytes) was registered with another heap; register it with this one")
    }
}
