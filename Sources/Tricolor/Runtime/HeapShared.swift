import CTricolor
import Glibc

/// Indexes of the heap's shared atomic words.
@usableFromInline
enum HeapWord: Int {
    case stopRequested = 0   // the attention word: Attention.stop | .gcDuties | .markDone
    case sweepgen            // Go's mheap.sweepgen; +2 per cycle
    case heapLive            // bytes in spans handed to mcaches + large objects since last mark
    case heapGoal            // the pacer's goal for this cycle
    case trigger             // a cycle starts when heapLive reaches this
    case numGC
    case cyclesCompleted     // cycles whose statistics are published
    case gcPhase             // GCPhase
    // marking (this cycle)
    case bytesMarked, scanWork, stackScanBytes, bgScanCredit, assistTimeNs, bgMarkTimeNs
    case assistWorkPerByte   // Double bit pattern
    case rootsClaimed, rootsDone, flushGen, activeWorkers, activeMutators
    case parkEvents          // mutators parking for a stop (the stopper spins on it)
    case markHandoffsTaken   // mark terminations a mutator ran for the worker (Attention.markDone)
    case stopRescues         // stops that pulled a descheduled mutator onto the stopper's CPU
    case handoffRefused      // this cycle: a mutator gave mark termination back to the worker
    case handoffsRefused     // cumulative count of those
    // sweeping
    case pagesSwept, pagesSweptBasis, sweepHeapLiveBasis, activeSweepers, sweepBlocked, sweepIndex
    case sweepPagesPerByte   // Double bit pattern
    // CPU limiter
    case limiterGCNs, limiterWindowStart, limitTriggerHeapSys
    case limiterEnabled      // 1 while the GC CPU limiter is limiting (Policy/CPULimiter.swift)
    // cumulative counters (Go's heapStats)
    case largeAllocCount, largeAllocBytes, largeFreeCount, largeFreeBytes
    case tinyAllocCount
    case heapInuse           // bytes in in-use spans
    case heapSys             // bytes of heap address space made Ready
    case heapReleased        // bytes of free pages returned to the OS
    // span lifecycle and page heap events (AllocPath.swift)
    case spansCreated, spansCached, spansUncached, spansSwept, spansFreed
    case heapGrows, heapGrowBytes, bytesReturnedToOS
    case hooksInstalled      // 1 while an allocation or free hook is installed
    case heapGrowing         // 1 while a thread grows the heap (MHeap.allocSpan)
    case smallAllocBase      // 68 entries: objects allocated per size class
    static let smallFreeBase = smallAllocBase.rawValue + SizeClassTable.numSizeClasses
    static let count = smallFreeBase + SizeClassTable.numSizeClasses
}
