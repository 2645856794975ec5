import CTricolor
import Glibc

// Large objects (Go's mallocgc large path; mallocgcLarge since Go 1.22): anything over
// 32 KiB gets a span of its own straight from the page heap, rounded up to whole pages,
// with no size class and no mcache. The span goes on its class-0 central list as full
// and swept, so the sweeper finds it; freeing it returns the pages to the page heap.

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
    func allocLarge(_ st: UnsafeMutablePointer<MutatorState>, size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        refreshMemoryLimitTrigger()
        maybeTriggerGC(st)
        let npages = (size + SizeClassTable.pageSize - 1) / SizeClassTable.pageSize
        deductSweepCredit(UInt(npages) << SizeClassTable.pageShiftU)
        let spc = SpanClass(sizeClass: 0, noscan: noscan)
        guard size <= Int(reservedBytes), let s = allocSpan(npages: npages, spanClass: spc) else {
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
        if phase != .off {
            // allocate black
            _ = tc_or64(s.pointee.gcmarkBits!, 1)
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
        msg.withCString { p in _ = write(2, p, strlen(p)) }
        runtimeFatal("out of memory")
    }
}
