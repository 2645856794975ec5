import CTricolor
import Glibc

extension Heap {
    // MARK: the mutator cache (MCache)

    /// Replace the full span of class `spc` in the mutator's cache (Go's mcache.refill).
    /// May start a collection first and pay mark assists. False when no memory can be had.
    func refill(_ st: UnsafeMutablePointer<MutatorState>, _ spc: SpanClass) -> Bool {
        let slot = st.pointee.spans + Int(spc.raw)
        let fastSlot = st.pointee.alloc + Int(spc.raw)
        let old = slot.pointee
        if old != emptySpan {
            if st.pointee.profRate != 0 { disarmSample(st, old, Int(spc.raw)) }
            uncacheAccounting(old)
            slot.pointee = emptySpan
            fastSlot.pointee = emptySpan
            uncacheSpan(old)
        }
        raisePathLevel(st, .central)
        refreshMemoryLimitTrigger()
        maybeTriggerGC(st)
        let spanBytes = UInt(SizeClassTable.classToAllocNPages[spc.sizeClass]) << SizeClassTable.pageShiftU
        deductSweepCredit(spanBytes)
        guard let s = cacheSpan(spc, st) else { return false }
        heapStats.spansCached.add(1, .relaxed)
        if let ids = s.pointee.typeIDs {
            // The fast path stores a type id per object; bring the array in now, as the
            // zeroing of the span did for the objects, instead of one miss per 32 slots.
            let raw = UnsafeRawPointer(ids)
            for off in stride(from: 0, to: Int(s.pointee.nelems) * 2, by: 64) { tc_prefetchw(raw + off) }
        }
        let sg = sweepgen
        s.storeSweepgen(sg &+ 3)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        let claimed = (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize
        gcController.heapLive.add(claimed, .relaxed)
        if phase == .mark {
            preBlacken(s)
            slot.pointee = s
            if !st.pointee.slowAlloc { fastSlot.pointee = s }
            reviseAssistRatio()
            assist(st, bytes: claimed)
        } else {
            slot.pointee = s
            if !st.pointee.slowAlloc { fastSlot.pointee = s }
        }
        return true
    }

    /// Stats for a span leaving a cache: objects allocated from it while cached, and the
    /// free slots refill had counted into heapLive in advance. Withdraws the pre-marks
    /// of slots that stayed free (allocate-black) and counts the new objects as marked.
    private func uncacheAccounting(_ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.allocCount = s.countAllocated()
        let n = s.pointee.allocCount - s.pointee.allocCountBeforeCache
        _ = tc_fetch_add_relaxed(counter(HeapWord.smallAllocBase.rawValue + s.pointee.spanClass.sizeClass), n)
        gcController.heapLive.sub((s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize, .relaxed)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        if s.pointee.blackened != 0 {
            let marks = s.pointee.gcmarkBits!
            for w in 0..<Int(s.pointee.bitmapWords) {
                let free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
                if free != 0 { _ = tc_and64(marks + w, ~free) }
            }
            marking.bytesMarked.add(n * s.pointee.elemSize, .relaxed)
            s.pointee.blackened = 0
        }
    }

    /// Allocate-black for a span cached during marking: every free slot is pre-marked, so
    /// whatever is allocated from it before it leaves the cache is black.
    func preBlacken(_ s: UnsafeMutablePointer<MSpan>) {
        let marks = s.pointee.gcmarkBits!
        for w in 0..<Int(s.pointee.bitmapWords) {
            let free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
            if free != 0 { _ = tc_or64(marks + w, free) }
        }
        s.pointee.blackened = 1
    }

    /// Flush a mutator's cache (Go's mcache.releaseAll).
    func releaseAll(_ st: UnsafeMutablePointer<MutatorState>) {
        for i in 0..<SpanClass.count {
            let s = st.pointee.spans[i]
            if s != emptySpan {
                if st.pointee.profRate != 0 { disarmSample(st, s, i) }
                uncacheAccounting(s)
                st.pointee.spans[i] = emptySpan
                st.pointee.alloc[i] = emptySpan
                uncacheSpan(s)
            }
        }
        st.pointee.tiny = 0
        st.pointee.tinyOffset = 0
        heapStats.tinyAllocCount.add(st.pointee.tinyAllocs, .relaxed)
        st.pointee.tinyAllocs = 0
    }
}
