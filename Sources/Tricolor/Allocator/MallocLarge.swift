import CTricolor
import Glibc

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
