import CTricolor
import Glibc

// The collector (stop-the-world for now; Go's mgc.go reduced to one pause).
//
// A cycle:
//  1. the triggering thread finishes sweeping the previous cycle's spans while the world
//     still runs (Go's gcStart does the same), so the pause does not sweep;
//  2. stop the world: every attached mutator is parked at a safepoint or in a blocking
//     region;
//  3. sweep termination: flush every mutator's cache back to the central lists;
//  4. mark: grey the roots (shadow stacks, globals, handles), then drain an explicit
//     grey stack, scanning each object's pointer words from its type's layout;
//  5. mark termination: heap goal for the next cycle from the marked bytes and GOGC,
//     sweepgen += 2 (every span becomes unswept), shrink oversized shadow stacks;
//  6. start the world; spans are swept lazily as mutators need them.
//
// Stop-the-world is cooperative: the requester sets the heap's stop flag, which
// mutators poll at safepoints, and waits on a condition variable until none is running.

public enum GCTrigger: Sendable {
    case heap      // heapLive reached the goal
    case forced    // collect()
}

extension Heap {
    // MARK: attaching

    /// Attach the calling thread as a mutator. Pair with `detach`. A thread can be
    /// attached to one heap at a time.
    public func attach() -> Mutator {
        if let cur = tc_get_current_mutator() {
            let st = cur.assumingMemoryBound(to: MutatorState.self)
            runtimeFatal("thread already attached as mutator \(st.pointee.id)\(st.pointee.heap === self ? "" : " of another heap")")
        }
        schedLock.lock()
        while stwActive { worldStarted.wait(schedLock) }
        let st: UnsafeMutablePointer<MutatorState>
        nextMutatorID += 1
        if let f = freeMutators, !checked {
            freeMutators = f.pointee.next
            st = f
            st.pointee.stackTop = 0
            st.pointee.slowFlags = 0
        } else {
            st = .allocate(capacity: 1)
            st.initialize(to: MutatorState(heap: self, id: nextMutatorID))
        }
        st.pointee.slowFlags = checked ? MutatorState.flagChecked : 0
        st.pointee.status = .running
        st.pointee.threadID = tc_thread_id()
        st.pointee.next = mutators
        mutators = st
        schedLock.unlock()
        tc_set_current_mutator(UnsafeMutableRawPointer(st))
        return Mutator(state: st)
    }

    /// Detach a mutator: its cache goes back to the heap and its frames stop being roots.
    public func detach(_ m: Mutator) {
        let st = m.state
        m.checkUsable("detach")
        if st.pointee.heap !== self { runtimeFatal("detach: mutator belongs to another heap") }
        if st.pointee.stopFlag.pointee != 0 { park(st) }
        schedLock.lock()
        // Flush under the sched lock so no collection runs between the flush and the unlink.
        releaseAll(st)
        var p = mutators
        var prev: UnsafeMutablePointer<MutatorState>? = nil
        while let q = p, q != st { prev = q; p = q.pointee.next }
        if let prev { prev.pointee.next = st.pointee.next } else { mutators = st.pointee.next }
        st.pointee.status = .detached
        st.pointee.stackTop = 0
        st.pointee.slowFlags |= MutatorState.flagDetached
        st.pointee.next = freeMutators
        freeMutators = st
        stateChanged.broadcast()
        schedLock.unlock()
        tc_set_current_mutator(nil)
    }

    /// Attach the calling thread, run `body`, detach.
    public func withMutator<R>(_ body: (Mutator) throws -> R) rethrows -> R {
        let m = attach()
        defer { detach(m) }
        return try body(m)
    }

    /// The mutator attached to the calling thread for this heap, if any.
    func currentMutator() -> UnsafeMutablePointer<MutatorState>? {
        guard let cur = tc_get_current_mutator() else { return nil }
        let st = cur.assumingMemoryBound(to: MutatorState.self)
        return st.pointee.heap === self ? st : nil
    }

    // MARK: stop the world

    /// Stop every mutator at a safepoint. Returns false (after waiting for it to finish)
    /// if another thread was already stopping the world.
    func stopTheWorld(_ caller: UnsafeMutablePointer<MutatorState>?) -> Bool {
        schedLock.lock()
        if stwActive {
            while stwActive {
                caller?.pointee.status = .parked
                stateChanged.broadcast()
                worldStarted.wait(schedLock)
            }
            caller?.pointee.status = .running
            schedLock.unlock()
            return false
        }
        stwActive = true
        store(.stopRequested, 1)
        caller?.pointee.status = .parked
        while true {
            var running = false
            var p = mutators
            while let m = p { if m.pointee.status == .running { running = true; break }; p = m.pointee.next }
            if !running { break }
            stateChanged.wait(schedLock)
        }
        schedLock.unlock()
        return true
    }

    func startTheWorld(_ caller: UnsafeMutablePointer<MutatorState>?) {
        schedLock.lock()
        stwActive = false
        store(.stopRequested, 0)
        caller?.pointee.status = .running
        worldStarted.broadcast()
        schedLock.unlock()
    }

    /// A mutator's answer to a stop request.
    func park(_ st: UnsafeMutablePointer<MutatorState>) {
        schedLock.lock()
        while stwActive {
            st.pointee.status = .parked
            stateChanged.broadcast()
            worldStarted.wait(schedLock)
        }
        st.pointee.status = .running
        schedLock.unlock()
    }

    func enterBlocking(_ st: UnsafeMutablePointer<MutatorState>) {
        schedLock.lock()
        st.pointee.status = .blocking
        stateChanged.broadcast()
        schedLock.unlock()
    }

    func exitBlocking(_ st: UnsafeMutablePointer<MutatorState>) {
        schedLock.lock()
        while stwActive { worldStarted.wait(schedLock) }
        st.pointee.status = .running
        schedLock.unlock()
    }

    // MARK: the mutator cache (MCache)

    /// Replace the full span of class `spc` in the mutator's cache (Go's mcache.refill).
    /// May run a collection first. False when no memory can be had.
    func refill(_ st: UnsafeMutablePointer<MutatorState>, _ spc: SpanClass) -> Bool {
        let slot = st.pointee.alloc + Int(spc.raw)
        let old = slot.pointee
        if old != emptySpan {
            uncacheAccounting(old)
            slot.pointee = emptySpan
            uncacheSpan(old)
        }
        maybeTriggerGC(st)
        guard let s = cacheSpan(spc) else { return false }
        let sg = sweepgen
        s.storeSweepgen(sg &+ 3)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        add(.heapLive, (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize)
        slot.pointee = s
        return true
    }

    /// Stats for a span leaving a cache: objects allocated from it while cached, and the
    /// free slots refill had counted into heapLive in advance.
    private func uncacheAccounting(_ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.allocCount = s.countAllocated()
        let n = s.pointee.allocCount - s.pointee.allocCountBeforeCache
        _ = tc_fetch_add_relaxed(counter(HeapWord.smallAllocBase.rawValue + s.pointee.spanClass.sizeClass), n)
        sub(.heapLive, (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
    }

    /// Flush a mutator's cache (Go's mcache.releaseAll).
    func releaseAll(_ st: UnsafeMutablePointer<MutatorState>) {
        for i in 0..<SpanClass.count {
            let s = st.pointee.alloc[i]
            if s != emptySpan {
                uncacheAccounting(s)
                st.pointee.alloc[i] = emptySpan
                uncacheSpan(s)
            }
        }
        st.pointee.tiny = 0
        st.pointee.tinyOffset = 0
        add(.tinyAllocCount, st.pointee.tinyAllocs)
        st.pointee.tinyAllocs = 0
    }

    func allocLarge(_ st: UnsafeMutablePointer<MutatorState>, size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        maybeTriggerGC(st)
        let npages = (size + SizeClassTable.pageSize - 1) / SizeClassTable.pageSize
        let spc = SpanClass(sizeClass: 0, noscan: noscan)
        guard size <= Int(reservedBytes), let s = allocSpan(npages: npages, spanClass: spc) else {
            if canFail { return 0 }
            throwOutOfMemory(size)
        }
        s.pointee.largeType = UInt32(typeID)
        s.pointee.limit = s.pointee.startAddr + UInt(size)
        s.pointee.freeIndex = 64      // past the only slot: allocated
        s.pointee.allocCount = 1
        s.pointee.allocCache = 0
        let bytes = UInt(npages) << SizeClassTable.pageShiftU
        add(.largeAllocCount, 1)
        add(.largeAllocBytes, bytes)
        add(.heapLive, bytes)
        let c = centrals + Int(spc.raw)
        let sg = sweepgen
        s.storeSweepgen(sg)
        c.pointee.lock.withLock { c.pointee.push(MCentral.fullSwept(sg), s) }
        return s.pointee.startAddr
    }

    func throwOutOfMemory(_ size: Int) -> Never {
        let msg = "runtime: out of memory: cannot allocate \(size)-byte block (\(load(.heapInuse)) in use)\n"
        msg.withCString { p in _ = write(2, p, strlen(p)) }
        runtimeFatal("out of memory")
    }

    // MARK: triggering

    @inline(__always)
    func maybeTriggerGC(_ st: UnsafeMutablePointer<MutatorState>?) {
        if load(.heapLive) >= load(.heapGoal) && gcPercentAtomic != nil {
            gcStart(.heap, caller: st)
        }
    }

    var gcPercentAtomic: Int? { gcPercent }

    /// Run a full collection now (Go's runtime.GC): returns once a whole cycle that
    /// started after the call has finished.
    public func collect() {
        gcStart(.forced, caller: currentMutator())
    }

    /// Set GOGC; returns the previous value (Go's debug.SetGCPercent, nil = off).
    @discardableResult
    public func setGCPercent(_ percent: Int?) -> Int? {
        let p = percent.flatMap { $0 < 0 ? nil : $0 }
        return statsLock.withLock {
            let old = gcPercent
            gcPercent = p
            heapGoal = Heap.goal(marked: heapMarked, roots: 0, gcPercent: p)
            store(.heapGoal, heapGoal)
            return old
        }
    }

    func gcStart(_ trigger: GCTrigger, caller: UnsafeMutablePointer<MutatorState>?) {
        let startNumGC = load(.numGC)
        while true {
            // Finish the previous cycle's sweep with the world running.
            finishSweep()
            if stopTheWorld(caller) { break }
            // Someone else ran (or is running) a cycle; a forced cycle must still see one
            // that started after it was requested, and a heap trigger may no longer hold.
            if trigger == .heap && load(.heapLive) < load(.heapGoal) { return }
            if trigger == .forced && load(.numGC) >= startNumGC + 2 { return }
        }
        if trigger == .heap && load(.heapLive) < load(.heapGoal) {
            startTheWorld(caller)
            return
        }
        runCycle(trigger)
        startTheWorld(caller)
        if trigger == .forced { sweepAfterForcedGC() }
    }

    /// Go's runtime.GC also completes the sweep before returning, so that stats reflect it.
    func sweepAfterForcedGC() { finishSweep() }

    /// One collection with the world stopped.
    func runCycle(_ trigger: GCTrigger) {
        let t0 = tc_nanotime()
        let heapLiveAtStart = load(.heapLive)
        // Sweep termination.
        var p = mutators
        while let m = p { releaseAll(m); p = m.pointee.next }
        finishSweep()
        let t1 = tc_nanotime()
        // Mark.
        let marked = markHeap()
        if configuration.checkmark { verifyMarks() }
        let t2 = tc_nanotime()
        // Mark termination.
        var rootBytes = UInt(globalsLock.withLock { globalSlots.bytes + handleSlots.bytes })
        p = mutators
        while let m = p { rootBytes += UInt(m.pointee.stackCap * 8); shrinkStack(m); p = m.pointee.next }
        heapMarked = marked
        store(.heapLive, marked)
        heapGoal = Heap.goal(marked: marked, roots: rootBytes, gcPercent: gcPercent)
        store(.heapGoal, heapGoal)
        store(.sweepgen, UInt(sweepgen &+ 2))
        store(.sweepSpans, 0)
        let n = load(.numGC) + 1
        store(.numGC, n)
        let t3 = tc_nanotime()
        recordPause(t3 - t0, end: tc_walltime_ns(), forced: trigger == .forced)
        lastCycle = CycleTrace(number: Int(n), start: t0, sweepTermNs: t1 - t0, markNs: t2 - t1, markTermNs: t3 - t2,
                               heapStart: heapLiveAtStart, heapMarked: marked, goal: heapGoal, stacks: rootBytes, forced: trigger == .forced)
        if configuration.gctrace { printTrace(lastCycle!) }
    }

    // MARK: marking

    /// Mark everything reachable from the roots; returns the bytes marked.
    func markHeap() -> UInt {
        var marked: UInt = 0
        gcWork.count = 0
        var p = mutators
        while let m = p {
            let stack = m.pointee.stack
            for i in 0..<m.pointee.stackTop { greyObject(stack[i], &marked) }
            p = m.pointee.next
        }
        globalsLock.withLock {
            globalSlots.forEach { greyObject($0, &marked) }
            handleSlots.forEach { greyObject($0, &marked) }
        }
        drain(&marked)
        return marked
    }

    /// Scan grey objects until none is left. Objects popped from the grey stack are
    /// prefetched and scanned a few pops later, from a small FIFO ring, so the cache miss
    /// on each object overlaps with scanning others (Go prefetches in greyobject; a ring
    /// gives the prefetch time to land).
    func drain(_ marked: inout UInt) {
        let ringSize = 16
        var ring = (0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt,
                    0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt)
        withUnsafeMutableBytes(of: &ring) { raw in
            let r = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
            var head = 0, count = 0
            while true {
                if let p = gcWork.pop() {
                    tc_prefetch(UnsafeRawPointer(bitPattern: p & 0xffff_ffff_ffff))
                    if count == ringSize {
                        let obj = r[head]
                        r[head] = p
                        head = (head + 1) & (ringSize - 1)
                        scanObject(obj, &marked)
                    } else {
                        r[(head + count) & (ringSize - 1)] = p
                        count += 1
                    }
                } else if count > 0 {
                    let obj = r[head]
                    head = (head + 1) & (ringSize - 1)
                    count -= 1
                    scanObject(obj, &marked)
                } else {
                    break
                }
            }
        }
    }

    /// Mark the object `p` points into, queueing it for scanning if it has pointers.
    /// Queue entries pack the object's base address with its 16-bit slot type (bits
    /// 48…63), so scanning a single small object needs no span lookup.
    @inline(__always)
    func greyObject(_ p: UInt, _ marked: inout UInt) {
        if p == 0 || p == zeroBase { return }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            badPointer(p)
            return
        }
        let idx = s.objectIndex(p)
        if s.setMarked(idx) {
            marked &+= s.pointee.elemSize
            if !s.pointee.spanClass.noscan {
                let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
                let tid: UInt16
                if let t = s.pointee.typeIDs { tid = t[Int(idx)] } else { tid = UInt16(s.pointee.largeType) | arrayTypeBit }
                gcWork.push(base | UInt(tid) &<< 48)
            }
        }
    }

    /// Scan the pointer words of an object (Go's scanobject), element by element for arrays.
    @inline(__always)
    func scanObject(_ entry: UInt, _ marked: inout UInt) {
        let obj = entry & 0xffff_ffff_ffff
        let tid = UInt16(truncatingIfNeeded: entry &>> 48)
        let t = types + Int(tid & ~arrayTypeBit)
        let ptrWords = t.pointee.ptrWords.unsafelyUnwrapped
        let np = t.pointee.numPtrWords
        var n: UInt = 1
        let size = t.pointee.size
        if tid & arrayTypeBit != 0 {
            let s = spanOf(obj).unsafelyUnwrapped
            let bytes = s.pointee.isLarge ? s.pointee.limit &- s.pointee.startAddr : s.pointee.elemSize
            n = bytes / size
        }
        var e = obj
        for _ in 0..<n {
            let w = UnsafePointer<UInt>(bitPattern: e).unsafelyUnwrapped
            for k in 0..<np {
                let v = w[Int(ptrWords[k])]
                if v != 0 { greyObject(v, &marked) }
            }
            e &+= size
        }
    }

    func badPointer(_ p: UInt) {
        if checked {
            runtimeFatal("found bad pointer in heap: \(Ref(address: p)) is not a live heap object")
        }
        // Unchecked: a value that is not a heap pointer is ignored.
    }

    /// gccheckmark: mark again from scratch with a simple recursive-free reference
    /// marker into a set and compare with the mark bits.
    func verifyMarks() {
        var seen = Set<UInt>()
        var work: [UInt] = []
        func visit(_ p: UInt) {
            if p == 0 || p == zeroBase { return }
            guard let s = spanOf(p) else { return }
            let base = s.pointee.startAddr + s.objectIndex(p) * s.pointee.elemSize
            if seen.insert(base).inserted { work.append(base) }
        }
        var p = mutators
        while let m = p { for i in 0..<m.pointee.stackTop { visit(m.pointee.stack[i]) }; p = m.pointee.next }
        globalSlots.forEach(visit); handleSlots.forEach(visit)
        while let obj = work.popLast() {
            let s = spanOf(obj)!
            if !s.isMarked(s.objectIndex(obj)) {
                runtimeFatal("gccheckmark: reachable object \(Ref(address: obj)) (span class \(s.pointee.spanClass.raw)) was not marked")
            }
            if s.pointee.spanClass.noscan { continue }
            let large = s.pointee.isLarge
            let tid = large ? Int(s.pointee.largeType) : Int(s.pointee.typeIDs![Int(s.objectIndex(obj))] & ~arrayTypeBit)
            let t = types[tid]
            let bytes = large ? s.pointee.limit - s.pointee.startAddr : s.pointee.elemSize
            for e in 0..<Int(bytes / t.size) {
                for k in 0..<t.numPtrWords {
                    visit(UnsafePointer<UInt>(bitPattern: obj + UInt(e) * t.size)![Int(t.ptrWords![k])])
                }
            }
        }
    }

    /// Halve a shadow stack that uses less than a quarter of itself (Go's shrinkstack).
    func shrinkStack(_ m: UnsafeMutablePointer<MutatorState>) {
        let cap = m.pointee.stackCap
        if cap / 2 >= MutatorState.initialStackSlots && m.pointee.stackTop < cap / 4 {
            let n = UnsafeMutablePointer<UInt>.allocate(capacity: cap / 2)
            n.moveInitialize(from: m.pointee.stack, count: m.pointee.stackTop)
            m.pointee.stack.deallocate()
            m.pointee.stack = n
            m.pointee.stackCap = cap / 2
        }
    }

    // MARK: checked mode

    /// Trap unless `r` is the start of a live object (or points into a live tiny block).
    func checkRef(_ r: Ref, _ what: String) {
        let p = r.address
        if p == zeroBase { return }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            runtimeFatal("invalid pointer \(r) \(what): not a live heap object")
        }
        let idx = s.objectIndex(p)
        let base = s.pointee.startAddr + idx * s.pointee.elemSize
        if base != p && s.pointee.spanClass != .tiny {
            runtimeFatal("invalid pointer \(r) \(what): points inside an object (object starts at \(Ref(address: base)))")
        }
        let unswept = s.loadSweepgen() == sweepgen &- 2
        let live = s.isAllocated(idx) && !(unswept && !s.isMarked(idx))
        if !live {
            runtimeFatal("invalid pointer \(r) \(what): the object was freed (use after free)")
        }
    }
}
