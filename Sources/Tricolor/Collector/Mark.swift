import CTricolor
import Glibc

// Marking (Go's mgcmark.go): greying objects, scanning them, draining grey work, and
// the roots outside mutator stacks.
//
// An object is grey when its mark byte is set and it sits in some marker's queue; black
// once scanned. `greyObject` sets the mark byte with a plain store (MSpan.gcmarkBytes:
// Go sets a bit with an atomic OR; a byte per object needs no locked instruction). Two
// markers that reach the same small object at the same instant may both queue it: it
// is scanned twice, harmlessly, and counted twice in bytesMarked. A large object's byte
// is set with an atomic OR, so exactly one marker queues it. `scanObject` greys what an
// object's pointer words hold, reading each with an acquire load so that a store a
// mutator published with release is seen whole. `drain` is the loop every marker runs
// (background workers, assists, collect()).
//
// Roots: each mutator scans its own shadow stack at a full safepoint (Barrier.swift);
// globals and handles are scanned once per cycle by whichever marker claims them first
// (`claimRoots`), concurrently with the mutators, under the globals lock. The hybrid
// write barrier makes that safe: a root overwritten after the scan had its old value
// shaded by the store that overwrote it.
//
// Invariants: a marked object in a scan span is queued at least once per cycle (a large
// object exactly once); the tri-color invariant holds modulo the barrier buffers (no
// black object points to a white one that is not grey or in a barrier buffer).

extension Heap {
    // MARK: marking

    /// Mark the object `p` points into, queueing it for scanning if it has pointers.
    /// Queue entries pack the object's base address with its 16-bit slot type (bits
    /// 48…63), so scanning a single small object needs no span lookup.
    @inline(__always)
    func greyObject(_ p: UInt, _ gcw: inout GCWork) {
        if p == 0 { return }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            // The zero-size object lies outside the heap's reservation: checked here,
            // off the path of every pointer that is a heap object.
            if p != zeroBase { badPointer(p) }
            return
        }
        let idx = s.objectIndex(p)
        let m = s.pointee.gcmarkBytes.unsafelyUnwrapped + Int(idx)
        if tc_load8_relaxed(m) != 0 { return }
        let spc = s.pointee.spanClass
        if _fastPath(spc.sizeClass != 0) {
            // A plain byte store (MSpan.gcmarkBytes). Two markers that load the same
            // pointer at the same instant may both get here and both queue the object:
            // it is scanned twice, which is harmless, and counted twice in bytesMarked.
            tc_store8_relaxed(m, 1)
            gcw.bytesMarked &+= s.pointee.elemSize
            if spc.noscan { return }
            // A small scan span always has its type-id array (MHeap.allocSpan).
            let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
            // A span filled with one type (MSpan.filledType, on this line) needs no
            // look at its type-id array.
            var tid = tc_load16_relaxed(s.filledTypeAddress)
            if tid == 0 { tid = tc_load16_relaxed(s.pointee.typeIDs.unsafelyUnwrapped + Int(idx)) }
            gcw.push(base | UInt(tid) &<< 48)
        } else {
            // A large object is queued exactly once: scanning it twice would repeat
            // all of its oblets.
            if tc_or8(m, 1) != 0 { return }
            gcw.bytesMarked &+= s.pointee.elemSize
            if spc.noscan { return }
            let tid = UInt16(truncatingIfNeeded: s.pointee.largeType) | arrayTypeBit
            gcw.push(s.pointee.startAddr | UInt(tid) &<< 48)
        }
    }

    /// Scan the pointer words of an object (Go's scanobject), element by element for arrays.
    @inline(__always)
    func scanObject(_ entry: UInt, _ gcw: inout GCWork) {
        let obj = entry & 0xffff_ffff_ffff
        let tid = UInt16(truncatingIfNeeded: entry &>> 48)
        let t = types + Int(tid & ~arrayTypeBit)
        // A single object of at most 64 words: one bit per pointer word.
        var bits = t.pointee.smallPtrBits
        if tid & arrayTypeBit == 0 && bits != 0 {
            repeat {
                let k = UInt(truncatingIfNeeded: bits.trailingZeroBitCount)
                bits &= bits &- 1
                let v = tc_load_acquire(UnsafeRawPointer(bitPattern: obj &+ k &* 8).unsafelyUnwrapped)
                if v != 0 { greyObject(v, &gcw) }
            } while bits != 0
            gcw.scanWork &+= t.pointee.size
            return
        }
        let ptrWords = t.pointee.ptrWords.unsafelyUnwrapped
        let np = t.pointee.numPtrWords
        var n: UInt = 1
        let size = t.pointee.size
        if tid & arrayTypeBit != 0 {
            let s = spanOf(obj).unsafelyUnwrapped
            if s.pointee.isLarge {
                // Large arrays are scanned in oblets of at most 128 KiB (Go's
                // maxObletBytes): the rest is queued as another entry, so no single scan
                // holds up a pause or leaves other markers idle.
                let end = s.pointee.limit
                let chunk = max(1, Heap.maxObletBytes / size) &* size
                let stop = end &- obj > chunk ? obj &+ chunk : end
                if stop < end { gcw.push(stop | UInt(tid) &<< 48) }
                n = (stop &- obj) / size
            } else {
                n = s.pointee.elemSize / size
            }
        }
        var e = obj
        for _ in 0..<n {
            for k in 0..<np {
                let v = tc_load_acquire(UnsafeRawPointer(bitPattern: e &+ UInt(ptrWords[k]) &* 8).unsafelyUnwrapped)
                if v != 0 { greyObject(v, &gcw) }
            }
            e &+= size
        }
        gcw.scanWork &+= n &* size
    }

    /// Scan grey objects until none is left locally or globally, or `budget` bytes have
    /// been scanned. Returns the bytes scanned. Objects popped are prefetched and scanned
    /// a few pops later from a small ring so their cache misses overlap.
    /// While draining, the marker counts in `marking.activeWorkers`, and before it stops
    /// counting it publishes what it still holds: mark termination requires the global
    /// list empty and no active marker.
    /// A `preemptible` drain (an assist, running on a mutator) also stops early when the
    /// world is being stopped, so an assist never holds up a pause for long.
    @discardableResult
    func drain(_ gcw: inout GCWork, budget: UInt = UInt.max, preemptible: Bool = false) -> UInt {
        marking.activeWorkers.add(1, .acquiringAndReleasing)
        defer {
            work.putAll(from: &gcw)
            marking.activeWorkers.sub(1, .acquiringAndReleasing)  // -1
        }
        let startWork = gcw.scanWork
        var ring = (0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt,
                    0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt,
                    0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt,
                    0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt)
        // The closures reach the heap through an unretained reference, not `self`, and
        // the loop nests its tests instead of `&&` (see `scanGlobalRoots`).
        let heap = Unmanaged.passUnretained(self)
        withUnsafeMutableBytes(of: &ring) { raw in
            let r = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
            heap._withUnsafeGuaranteedRef { $0.drainLoop(&gcw, ring: r, budget: budget, startWork: startWork, preemptible: preemptible) }
        }
        let done = gcw.scanWork &- startWork
        flushMarkedStats(&gcw)
        return done
    }

    /// `drain`'s loop, with its prefetch ring of 32 entries at `r`.
    @inline(__always)
    private func drainLoop(_ gcw: inout GCWork, ring r: UnsafeMutablePointer<UInt>, budget: UInt, startWork: UInt,
                           preemptible: Bool) {
        let ringSize = 32
        var head = 0, count = 0
        var polls = 0
        while gcw.scanWork &- startWork < budget {
            if preemptible {
                polls &+= 1
                // Nested ifs, not `&&` (see `scanGlobalRoots`).
                if polls & 63 == 0 { if sched.attention.load(.relaxed) & Attention.stop != 0 { break } }
            }
            if let p = gcw.pop() {
                tc_prefetch(UnsafeRawPointer(bitPattern: p & 0xffff_ffff_ffff))
                if count == ringSize {
                    let obj = r[head]
                    r[head] = p
                    head = (head &+ 1) & (ringSize &- 1)
                    scanObject(obj, &gcw)
                } else {
                    r[(head &+ count) & (ringSize &- 1)] = p
                    count &+= 1
                }
                // Share work whenever the global list is dry and this marker holds
                // more than a few entries (Go's gcw.balance, which hands off half a
                // buffer once it holds more than 4): half of them, the oldest, up to
                // a batch. A binary tree marked depth-first never holds more than a
                // few dozen entries, and sharing only past 512 left a second marker
                // idle while an assist drained the whole tree alone.
                if gcw.count > 4 { if work.isEmptyApprox { work.putOldest(from: &gcw, min(gcw.count / 2, GCWork.batch)) } }
            } else if count > 0 {
                let obj = r[head]
                head = (head &+ 1) & (ringSize &- 1)
                count &-= 1
                scanObject(obj, &gcw)
            } else if !work.get(into: &gcw) {
                if claimRoots() { scanGlobalRoots(&gcw) } else { break }
            }
        }
        // Budget reached with objects still in the ring: they go back to the queue.
        while count > 0 { gcw.push(r[head]); head = (head &+ 1) & (ringSize &- 1); count &-= 1 }
    }

    /// Move a marker's counters into the heap's.
    func flushMarkedStats(_ gcw: inout GCWork) {
        if gcw.bytesMarked != 0 { marking.bytesMarked.add(gcw.bytesMarked, .relaxed); gcw.bytesMarked = 0 }
        if gcw.scanWork != 0 { marking.scanWork.add(gcw.scanWork, .relaxed); gcw.scanWork = 0 }
    }

    /// Take the job of scanning globals and handles; true for exactly one caller per cycle.
    func claimRoots() -> Bool {
        // Not `&&` (see `scanGlobalRoots`).
        if marking.rootsClaimed.load(.relaxed) != 0 { return false }
        return marking.rootsClaimed.compareExchange(expected: 0, desired: 1)
    }

    /// Runs on collector threads, so no closure here captures the heap strongly (here,
    /// in `scanLifecycleRoots` and what it calls): a retain of the heap held by a
    /// collector thread becomes the last release if the program drops the heap
    /// meanwhile, and a heap's deinit on its own collector thread is fatal
    /// (`LifecycleTests.testHeapDroppedMidCycleKeepsSpecialsConsistentAndReleasesEveryBox`
    /// caught a retain through the lifecycle roots' closures). Locks are taken with
    /// lock()/unlock(), and closures reach the heap through an unretained reference
    /// (`_withUnsafeGuaranteedRef`: an `unowned(unsafe)` capture still retained it per
    /// call). This is the rule for every collector-thread path (the other sites point
    /// here). In an unoptimized build every closure that captures `self` retains the heap,
    /// including a `withLock` body and the right side of `&&` and `||` (an autoclosure):
    /// such tests are written as nested `if`s there.
    func scanGlobalRoots(_ gcw: inout GCWork) {
        let heap = Unmanaged.passUnretained(self)
        // The table sizes are read under the lock too: makeHandle may grow them meanwhile.
        globalsLock.lock()
        let bytes = withUnsafeMutablePointer(to: &gcw) { w in
            heap._withUnsafeGuaranteedRef { h in
                h.globalSlots.forEach { v in heap._withUnsafeGuaranteedRef { $0.greyObject(v, &w.pointee) } }
                h.handleSlots.forEach { v in heap._withUnsafeGuaranteedRef { $0.greyObject(v, &w.pointee) } }
                return h.globalSlots.bytes + h.handleSlots.bytes
            }
        }
        globalsLock.unlock()
        // Finalizers, cleanups, weak handles, the finalizer queue, pools.
        let lifecycleBytes = scanLifecycleRoots(&gcw)
        gcw.scanWork &+= UInt(bytes + lifecycleBytes)
        marking.rootsDone.store(1, .releasing)
    }

    /// Grey every root slot of a mutator's shadow stack and, with conservative scanning
    /// on, every object its native stack points into (Collector/ConservativeScan.swift).
    /// Called by the mutator itself at a full safepoint, or by a collector holding the
    /// sched lock while the mutator is in a blocking region.
    func scanStack(_ st: UnsafeMutablePointer<MutatorState>, _ gcw: inout GCWork) {
        let stack = st.pointee.stack
        let n = st.pointee.stackTop
        for i in 0..<n { greyObject(stack[i], &gcw) }
        var bytes = UInt(n * 8)
        if conservativeStacks {
            let own = tc_get_current_mutator() == UnsafeMutableRawPointer(st)
            let native = own ? scanOwnNativeStack(st, &gcw) : scanNativeStack(st, from: st.pointee.nativeSP, &gcw)
            st.pointee.lastNativeScan = native
            bytes &+= native
        }
        gcw.scanWork &+= bytes
        marking.stackScanBytes.add(bytes, .relaxed)
    }

    /// Shade a pointer from outside any marker (handle creation and release while marking).
    func shadeFromAnyThread(_ p: UInt) {
        if p == 0 || phase == .off { return }
        var gcw = GCWork(capacity: 16)
        greyObject(p, &gcw)
        flushMarkedStats(&gcw)
        work.putAll(from: &gcw)
        gcw.destroy()
    }

    func badPointer(_ p: UInt) {
        if checked {
            runtimeFatal("found bad pointer in heap: \(Ref(address: p)) is not a live heap object")
        }
        // Unchecked: a value that is not a heap pointer is ignored.
    }
}
