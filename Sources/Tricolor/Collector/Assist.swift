import CTricolor
import Glibc

extension Heap {
    // MARK: assists

    /// A mutator that allocates while marking pays scan work in proportion (Go's
    /// gcAssistAlloc): first from background credit, then by draining grey objects.
    func assist(_ st: UnsafeMutablePointer<MutatorState>, bytes: UInt) {
        mutatorGCDuties(st)
        let perByte = Double(bitPattern: UInt64(gcController.assistWorkPerByte.load(.relaxed)))
        st.pointee.assistDebt += Double(bytes) * perByte
        if st.pointee.assistDebt <= 0 { return }
        if cpuLimiterLimiting() { return }
        var owed = UInt(st.pointee.assistDebt)
        // Steal background credit.
        let credit = marking.bgScanCredit.load(.relaxed)
        if credit > 0 {
            let take = min(credit, owed)
            if marking.bgScanCredit.compareExchange(expected: credit, desired: credit - take) {
                owed -= take
                st.pointee.assistDebt -= Double(take)
            }
        }
        if owed == 0 { return }
        let t0 = tc_thread_cputime_ns()
        let done = drain(&st.pointee.gcw.pointee, budget: max(owed, Heap.overAssistWork), preemptible: true)
        st.pointee.assistDebt -= Double(done)
        let dt = tc_thread_cputime_ns() - t0
        marking.assistTimeNs.add(UInt(dt), .relaxed)
        limiterAddGC(dt)
        if markWorkerCount == 0 && work.isEmptyApprox {
            markDone(st)
        }
    }

    static let overAssistWork: UInt = 64 << 10
    static let maxObletBytes: UInt = 128 << 10

    /// Recompute the assist ratio from the work and heap left in the cycle (Go's revise).
    func reviseAssistRatio() {
        // heapLive bounds the scannable heap from above (Go tracks heapScan exactly).
        let live = gcController.heapLive.load(.relaxed)
        let r = pacer.revise(heapLive: live, heapScan: live, scanWorkDone: marking.scanWork.load(.relaxed), maxStackScan: maxStackScan)
        gcController.assistWorkPerByte.store(UInt(r.workPerByte.bitPattern), .releasing)
    }
}
