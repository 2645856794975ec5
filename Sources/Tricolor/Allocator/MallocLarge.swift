import CTricolor
import Glibc

// Large objects (Go's mallocgc large path; mallocgcLarge since Go 1.22): anything over
// 32 KiB gets a span of its own straight from the page heap, rounded up to whole pages,
// with no size class and no mcache. The span goes on its class-0 central list as full
// and swept, so the sweeper finds it; freeing it returns the pages to the page heap.
//
// Sizes: any size up to Int.max may arrive here (allocateBytes, allocateArray's
// count × size). A size past the heap's reservation can never be satisfied and fails
// before any arithmetic on it; below that, every page computation fits comfortably
// (the reservation is at most 64 TiB), and MHeap checks again against the pages left.

extension Mutator {
    /// A large object of `size` bytes (> 32 KiB).
    func allocateLarge(_ size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        let st = state
        unowned(unsafe) let heap = st.pointee.heap
        raisePathLevel(st, .large)
        let p = heap.allocLarge(st, size: size, typeID: typeID, noscan: noscan, canFail: canFail)
        if p != 0 && st.pointee.mcache.pointee.profRate != 0, let s = heap.spanOf(p) {
            sampleBytes(Int(s.pointee.npages << SizeClassTable.pageShiftU), p, s)
        }
        return p
    }
}

extension Heap {
    /// Pages needed for `size` bytes, or nil when `size` exceeds the reservation.
    /// Overflow-free for every Int.
    @inline(__always)
    func largeObjectPages(_ size: Int) -> Int? {
        guard size > 0, UInt(size) <= reservedBytes else { return nil }
        let (q, r) = size.quotientAndRemainder(dividingBy: SizeClassTable.pageSize)
        return r == 0 ? q : q + 1
    }

    /// Returns 0 only when `canFail`; otherwise out of memory is fatal (Go's
    /// "runtime: out of memory: cannot allocate N-byte block").
    func allocLarge(_ st: UnsafeMutablePointer<MutatorState>, size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        guard let npages = largeObjectPages(size) else {
            if canFail { return 0 }
            throwOutOfMemory(size)
        }
        refreshMemoryLimitTrigger()
        maybeTriggerGC(st)
        deductSweepCredit(UInt(npages) << SizeClassTable.pageShiftU)
        let spc = SpanClass(sizeClass: 0, noscan: noscan)
        guard let s = allocSpan(npages: npages, spanClass: spc) else {
            if canFail { return 0 }
            throwOutOfMemory(size)
        }
        s.pointee.largeType = UInt32(typeID)
        s.pointee.limit = s.pointee.startAddr + UInt(size)
        s.setFreeIndex(64)            // past the only slot: allocated
        s.pointee.allocCount = 1
        s.pointee.allocCache = 0
        let bytes = UInt(npages) << SizeClassTable.pageShiftU
        heapStats.largeAllocCount.add(1, .relaxed)
        heapStats.largeAllocBytes.add(bytes, .relaxed)
        gcController.heapLive.add(bytes, .relaxed)
        if !noscan { gcController.heapScan.add(bytes, .relaxed) }
        if phase != .off {
            // allocate black
            s.setMarked(0)
            marking.bytesMarked.add(bytes, .relaxed)
        }
        let c = centrals + Int(spc.raw)
        let sg = sweepgen
        s.storeSweepgen(sg)
        c.pointee.lock.withLock { c.pointee.push(MCentral.fullSwept(sg), s) }
        if phase == .mark { reviseAssistRatio(); assist(st, bytes: bytes) }
        return s.pointee.startAddr
    }

    func throwOutOfMemory(_ size: Int) -> Never {
        let msg = "runtime: out of memory: cannot allocate \(size)-byte block (\(heapStats.heapInuse.load(.relaxed)) in use)\n"
        writeStderr(msg)
        runtimeFatal("out of memory")
    }
}
