import CTricolor
import Glibc

// Mark assists (Go's gcAssistAlloc in mgcmark.go): a mutator that allocates while the
// collector marks pays for it in scan work, in proportion to what it allocated
// (`assistWorkPerByte`, set by the pacer so that marking finishes before the heap
// reaches its goal). It first takes background credit, then drains grey objects itself.
//
// Invariants: assist debt is per mutator and reset at each cycle's pauses; an assist is
// preemptible (it stops when the world is being stopped).

extension Heap {
    // MARK: assists

    /// A mutator that allocates while marking pays scan work in proportion (Go's
    /// gcAssistAlloc): first from background credit, then by draining grey objects.
    func assist(_ st: UnsafeMutablePointer<MutatorState>, bytes: UInt) {
        mutatorGCDuties(st)
        let perByte = gcController.assistWorkPerByte.load(.relaxed)
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

    static let overAssistWork = Tuning.overAssistWork
    static let maxObletBytes = Tuning.maxObletBytes
}
