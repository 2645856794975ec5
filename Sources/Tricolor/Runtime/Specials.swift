import CTricolor
import Glibc

// Specials: per-object records that change what the collector does with one object
// (Go's mspan.specials and the special records of mheap.go, and how mgcsweep.go and
// mgcmark.go's markrootSpans treat them).
//
// Kinds, in the order they sort within one object (Go sorts by offset, then kind):
//   finalizer   `setFinalizer`: at most one per object.
//   weakHandle  the one weak handle of an object (`makeWeak`): at most one per object.
//   cleanup     `addCleanup`: any number per object, each with a unique id.
//   swiftBox    the Swift object a box owns (`makeBox`): released after the box dies.
//   profile     a heap-profile sample (Go's specialprofile): its bucket, so that the
//               sweeper can count the object's free (Observability/MemProfile.swift).
//               At most one per address; the address may be inside a tiny block.
// A span with records has `specialsBit` in its `hasSpecials` byte, so a span without
// specials costs the sweeper one byte test and the allocation fast path and marking
// nothing at all.
//
// Storage. The records hold Swift closures and retained Swift objects, so they live in
// Swift's heap (a dictionary keyed by span start, each list sorted by object address
// and kind), not in span metadata; only the collector's slow paths touch them: adding
// or removing a special, sweeping a span whose `hasSpecials` has `specialsBit`, and the
// once-per-cycle root scan below.
//
// Debugger mirror. A debugger cannot read a Swift dictionary, so each span with
// records also carries a plain C copy of its list (`MSpan.debugSpecials`, CTricolor's
// tc_debug_special: addr, kind, id, arg; same order), which the gdb extension finds
// through the debug descriptor (Observability/DebugDescriptor.swift). It is changed
// together with the list, under the specials lock, by the only code that changes lists:
// an insertion or removal moves the records after it by one (as the Swift array does),
// a sweep rewrites the span's copy, and a list that empties frees its copy (as does the
// heap's deinit, in `releaseLifecycleLeftovers`). So the copy costs nothing on the
// allocation, barrier or marking paths, and memory only for spans with records.
//
// Marking (Go's markrootSpans). Once per cycle, with the other non-stack roots:
//   - a finalizer's object is scanned but not marked: what it refers to survives, the
//     object itself only if something else reaches it. An object reachable from
//     itself (a cycle through it) is therefore never finalized or freed, as in Go;
//   - a cleanup's argument is marked (it is a root until the cleanup runs or stops);
//   - a weak handle object is marked, so that every weak reference made from one
//     object shares one handle while the object lives.
// Specials added while marking are marked through at once (Go's addfinalizer does the
// same), so a root scan that already ran misses nothing.
//
// Sweeping (Go's sweepLocked.sweep, the specials half). Before the mark bits become the
// alloc bits, for each object with specials that was not marked:
//   - if it has a finalizer: the object is marked again (it survives this cycle, and
//     so does its heap-profile record, as in Go), its finalizer is queued for the
//     finalizer thread, and its weak handle is cleared (before the finalizer can run,
//     so a weak reference never resurrects it). Cleanups, boxes and the profile record
//     stay: they belong to the object's real death;
//   - otherwise it dies: its weak handle is cleared, its cleanups are queued, its
//     Swift object is queued for release, its profile sample counted as freed. All
//     its records go.
// Records are grouped by exact address, and a tiny block's profile records sit after
// the block's start, so a revived object's later records see it marked and stay.
// A span is freed only when none of its objects lived, so no record of a live object
// ever outlives its span; every record of a dead one is gone before the span is reused.
//
// Invariants (checkSpecialsInvariants): each span's list is sorted by (address, kind);
// at most one finalizer, one weak handle and one profile record per address; every
// record's address is in an allocated object of its span (the start, except a profile
// record's in a tiny block); a span with a list has `specialsBit` set; `count` and
// `profileRecords` count the records; a span's debugger mirror equals its list record
// for record, and exactly the spans with lists have one (`mirrors` counts them).
// Locking: `SpecialsTable.lock` (rank specials) guards everything here; the sweeper
// takes it with no other lock held; the finalizer queue's lock nests inside it.

/// What a special record does (Go's _KindSpecial*).
enum SpecialKind: UInt8, Comparable {
    // (The numbers of the first four are in the heap-dump format's root kinds.)
    case finalizer = 1, weakHandle = 2, cleanup = 3, swiftBox = 4, profile = 5
    static func < (a: SpecialKind, b: SpecialKind) -> Bool { a.rawValue < b.rawValue }
}

/// A function the finalizer thread calls with an object (finalizers) or an argument
/// (cleanups).
typealias LifecycleFunction = (Mutator, Ref) throws -> Void

/// One special record.
struct Special {
    /// Start address of the object it belongs to.
    var addr: UInt
    var kind: SpecialKind
    /// Cleanups: the id `Cleanup.stop()` names. 0 otherwise.
    var id: UInt64 = 0
    /// Finalizer or cleanup function.
    var fn: LifecycleFunction? = nil
    /// Cleanup: its argument (a root). Weak handle: the handle object's address.
    /// Profile: the heap profile's bucket index.
    var arg: UInt = 0
    /// Box: the Swift object, retained once by the record.
    var box: UnsafeMutableRawPointer? = nil
}

/// Work for the finalizer thread (Go's finalizer queue entries).
enum LifecycleJob {
    /// Run a finalizer with its (revived) object.
    case finalizer(LifecycleFunction, obj: UInt)
    /// Run a cleanup with its argument.
    case cleanup(LifecycleFunction, arg: UInt)
    /// Release a Swift object a dead box owned.
    case release(UnsafeMutableRawPointer)
    /// A job that has run: the queue no longer holds its closure.
    case done
}

/// Every special record of a heap (see the top of this file). All fields: `lock`.
final class SpecialsTable: @unchecked Sendable {
    let lock = RuntimeLock(rank: .specials)
    var bySpan: [UInt: [Special]] = [:]
    var nextCleanupID: UInt64 = 1
    /// Live weak handles (weak-handle records).
    var weakHandles = 0
    /// Records of all kinds.
    var count = 0
    /// Profile records (of `count`).
    var profileRecords = 0
    /// Spans with a debugger mirror (`MSpan.debugSpecials` not nil).
    var mirrors = 0

    deinit { lock.destroy() }

    /// The index of the first record at or after address `addr` (binary search: a
    /// list is sorted by address).
    static func firstIndex(_ list: [Special], _ addr: UInt) -> Int {
        var lo = 0, hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid].addr < addr { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Insert `sp` in order (after the records of its object of kinds ≤ its own) and
    /// return its index; nil if its kind is allowed once per object and the object has one.
    static func insert(_ sp: Special, into list: inout [Special]) -> Int? {
        var i = firstIndex(list, sp.addr)
        while i < list.count && list[i].addr == sp.addr && list[i].kind <= sp.kind {
            if list[i].kind == sp.kind && sp.kind != .cleanup && sp.kind != .swiftBox { return nil }
            i += 1
        }
        list.insert(sp, at: i)
        return i
    }

    /// Run `body` on a list in place.
    static func modify(_ list: inout [Special], _ body: (inout [Special]) -> Void) { body(&list) }
}

extension UnsafeMutablePointer where Pointee == MSpan {
    /// The `hasSpecials` bit: the span has records in the specials table.
    static var specialsBit: UInt8 { 1 }
    var hasSpecialsAddress: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(self) + MemoryLayout<MSpan>.offset(of: \MSpan.hasSpecials)!
    }
    /// Set or clear bits of `hasSpecials` (under the specials lock; atomic, because the
    /// sweeper tests the byte without the lock).
    func setSpecialsBits(_ b: UInt8) { _ = tc_or8(hasSpecialsAddress, b) }
    func clearSpecialsBits(_ b: UInt8) { _ = tc_and8(hasSpecialsAddress, ~b) }
    var specialsBits: UInt8 { tc_load8_relaxed(hasSpecialsAddress) }
}

extension Heap {
    /// The span and slot of the object starting at `addr`; traps (in every mode: these
    /// calls are rare and a wrong address would corrupt the collector's state) unless
    /// it is the start of an allocated object of this heap. `what` names the caller.
    func objectForSpecial(_ addr: UInt, _ what: StaticString) -> (UnsafeMutablePointer<MSpan>, UInt) {
        guard let s = spanOf(addr), s.pointee.state == MSpanState.inUse.rawValue, addr < s.pointee.limit else {
            runtimeFatal("\(what): \(Ref(address: addr)) is not an object of this heap")
        }
        let idx = s.pointee.isLarge ? 0 : s.objectIndex(addr)
        let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
        if base != addr && s.pointee.spanClass == .tiny {
            runtimeFatal("\(what): \(Ref(address: addr)) is a tiny object (pointer-free, under 16 bytes) inside a block shared with others; allocate at least 16 bytes")
        }
        if base != addr { runtimeFatal("\(what): \(Ref(address: addr)) is not the start of an object (it points into the object at \(Ref(address: base)))") }
        return (s, idx)
    }

    /// Add a record; false (nothing added) if the object already has one of a kind
    /// allowed once. Specials lock held. The span's list is changed in place (no copy).
    func insertSpecialLocked(_ sp: Special, span s: UnsafeMutablePointer<MSpan>) -> Bool {
        guard let at = SpecialsTable.insert(sp, into: &specials.bySpan[s.pointee.startAddr, default: []]) else { return false }
        mirrorInsertLocked(s, sp, at: at)
        specials.count += 1
        if sp.kind == .weakHandle { specials.weakHandles += 1 }
        if sp.kind == .profile { specials.profileRecords += 1 }
        s.setSpecialsBits(UnsafeMutablePointer<MSpan>.specialsBit)
        return true
    }

    /// Remove the first record matching `match` for the object at `addr`; returns it.
    /// Specials lock held.
    func removeSpecialLocked(span s: UnsafeMutablePointer<MSpan>, addr: UInt, _ match: (Special) -> Bool) -> Special? {
        let base = s.pointee.startAddr
        guard specials.bySpan[base] != nil else { return nil }
        var removed: Special? = nil
        var at = 0
        var empty = false
        SpecialsTable.modify(&specials.bySpan[base, default: []]) { list in
            var i = SpecialsTable.firstIndex(list, addr)
            while i < list.count && list[i].addr == addr {
                if match(list[i]) { removed = list.remove(at: i); at = i; break }
                i += 1
            }
            empty = list.isEmpty
        }
        if empty {
            specials.bySpan[base] = nil
            s.clearSpecialsBits(UnsafeMutablePointer<MSpan>.specialsBit)
            mirrorFreeLocked(s)
        } else if removed != nil {
            mirrorRemoveLocked(s, at: at)
        }
        guard let sp = removed else { return nil }
        specials.count -= 1
        if sp.kind == .weakHandle { specials.weakHandles -= 1 }
        if sp.kind == .profile { specials.profileRecords -= 1 }
        return sp
    }

    /// The record of `kind` for the object at `addr`, if any. Specials lock held.
    func findSpecialLocked(span s: UnsafeMutablePointer<MSpan>, addr: UInt, kind: SpecialKind) -> Special? {
        guard let list = specials.bySpan[s.pointee.startAddr] else { return nil }
        var i = SpecialsTable.firstIndex(list, addr)
        while i < list.count && list[i].addr == addr {
            if list[i].kind == kind { return list[i] }
            i += 1
        }
        return nil
    }

    // MARK: marking

    /// Grey what the object at `addr` points to, without marking the object (Go's
    /// scanobject on a finalizer's object in markrootSpans).
    func markThrough(_ addr: UInt, _ gcw: inout GCWork) {
        guard let s = spanOf(addr), !s.pointee.spanClass.noscan else { return }
        let tid: UInt16
        if let t = s.pointee.typeIDs {
            tid = tc_load16_relaxed(t + Int(s.objectIndex(addr)))
        } else {
            tid = UInt16(truncatingIfNeeded: s.pointee.largeType) | arrayTypeBit
        }
        scanObject(addr | UInt(tid) &<< 48, &gcw)
    }

    /// How inspection and heap dumps name a special record.
    func describeSpecial(_ sp: Special) -> String {
        func hex(_ v: UInt) -> String { "0x" + String(v, radix: 16) }
        switch sp.kind {
        case .finalizer: return "finalizer"
        case .weakHandle: return "weak handle \(hex(sp.arg))"
        case .cleanup: return "cleanup #\(sp.id) (argument \(hex(sp.arg)))"
        case .swiftBox: return "Swift object box"
        case .profile: return "heap profile sample"
        }
    }

    /// The lifecycle roots, once per cycle (from `scanGlobalRoots`): specials as
    /// described at the top of this file, then the finalizer queue (objects and
    /// arguments waiting to be run) and the pools. Returns the bytes of root records read.
    func scanLifecycleRoots(_ gcw: inout GCWork) -> Int {
        // On collector threads: no closure may capture the heap strongly (see
        // `scanGlobalRoots`).
        let heap = Unmanaged.passUnretained(self)
        // The outer closures too: calling `forEachSpecialRoot` on `self` inside them
        // captured it (an unoptimized build's debug test run caught that one).
        let n = withUnsafeMutablePointer(to: &gcw) { w in
            heap._withUnsafeGuaranteedRef { h in
                h.forEachSpecialRoot(grey: { v in heap._withUnsafeGuaranteedRef { $0.greyObject(v, &w.pointee) } },
                                     through: { v in heap._withUnsafeGuaranteedRef { $0.markThrough(v, &w.pointee) } })
                    + h.forEachPooled { v in heap._withUnsafeGuaranteedRef { $0.greyObject(v, &w.pointee) } }
            }
        }
        return n * 8
    }

    /// Calls `grey` with each address the specials and the finalizer queue keep alive,
    /// and `through` with each finalizer's object (whose referents they keep). Returns
    /// the records looked at. Also used by gccheckmark.
    func forEachSpecialRoot(grey: (UInt) -> Void, through: (UInt) -> Void) -> Int {
        var n = 0
        let table = specials
        table.lock.lock()   // not withLock: no closure capturing the heap (see scanGlobalRoots)
        for (_, list) in table.bySpan {
            for sp in list {
                switch sp.kind {
                case .finalizer: through(sp.addr)
                case .cleanup, .weakHandle: if sp.arg != 0 { grey(sp.arg) }
                case .swiftBox, .profile: break
                }
            }
            n += list.count
        }
        table.lock.unlock()
        n += finalizerQueue.forEachRoot(grey)
        return n
    }

    /// A special added or a root taken while marking: mark what the collector would
    /// have marked had the root scan seen it (Go's addfinalizer scans at once).
    func shadeNewSpecial(markThrough obj: UInt, grey other: UInt) {
        if phase == .off { return }
        var gcw = GCWork(capacity: 16)
        if obj != 0 { markThrough(obj, &gcw) }
        if other != 0 { greyObject(other, &gcw) }
        flushMarkedStats(&gcw)
        work.putAll(from: &gcw)
        gcw.destroy()
    }

    // MARK: sweeping

    /// Sweep the lifecycle specials of a span the caller is sweeping (sweepgen ==
    /// sg-1), before its mark bits become its alloc bits. See the top of this file.
    func sweepSpecials(_ s: UnsafeMutablePointer<MSpan>) {
        var jobs: [LifecycleJob] = []
        var finalizers = 0, cleanups = 0
        var profileFrees: [Int] = []
        // lock()/unlock() and a method, not withLock's closure: this runs on the
        // background sweeper, and a closure capturing the heap retained it there (a
        // collector thread must never hold the heap's last reference; see
        // Heap.scanGlobalRoots).
        specials.lock.lock()
        sweepSpecialsLocked(s, &jobs, &finalizers, &cleanups, &profileFrees)
        specials.lock.unlock()
        // The thread was started with the first finalizer, cleanup or box.
        // The profiler's lock ranks before the specials lock: the frees are counted now.
        if !profileFrees.isEmpty { memProfiler.recordFrees(profileFrees, elemSize: Int(s.pointee.elemSize)) }
    }

    /// `sweepSpecials` under the specials lock.
    private func sweepSpecialsLocked(_ s: UnsafeMutablePointer<MSpan>, _ jobs: inout [LifecycleJob], _ finalizers: inout Int,
                                     _ cleanups: inout Int, _ profileFrees: inout [Int]) {
        let base = s.pointee.startAddr
        guard let list = specials.bySpan[base] else {
            s.clearSpecialsBits(UnsafeMutablePointer<MSpan>.specialsBit)
            mirrorFreeLocked(s)
            return
        }
        var keep: [Special] = []
        keep.reserveCapacity(list.count)
        var i = 0
        while i < list.count {
            let addr = list[i].addr
            var j = i
            while j < list.count && list[j].addr == addr { j += 1 }
            let idx = s.pointee.isLarge ? 0 : s.objectIndex(addr)
            if s.isMarked(idx) {
                keep.append(contentsOf: list[i..<j])
            } else if list[i..<j].contains(where: { $0.kind == .finalizer }) {
                // Revive the object for one more cycle; the finalizer gets it.
                s.setMarked(idx)
                for sp in list[i..<j] {
                    switch sp.kind {
                    case .finalizer:
                        jobs.append(.finalizer(sp.fn!, obj: addr)); finalizers += 1
                        specials.count -= 1
                    case .weakHandle:
                        clearWeakHandle(sp.arg)
                        specials.count -= 1; specials.weakHandles -= 1
                    case .cleanup, .swiftBox, .profile:
                        keep.append(sp)
                    }
                }
            } else {
                for sp in list[i..<j] {
                    switch sp.kind {
                    case .finalizer: break   // not reached: handled above
                    case .weakHandle: clearWeakHandle(sp.arg); specials.weakHandles -= 1
                    case .cleanup: jobs.append(.cleanup(sp.fn!, arg: sp.arg)); cleanups += 1
                    case .swiftBox: jobs.append(.release(sp.box!))
                    case .profile: profileFrees.append(Int(sp.arg)); specials.profileRecords -= 1
                    }
                    specials.count -= 1
                }
            }
            i = j
        }
        if keep.isEmpty {
            specials.bySpan[base] = nil
            s.clearSpecialsBits(UnsafeMutablePointer<MSpan>.specialsBit)
            mirrorFreeLocked(s)
        } else {
            if keep.count != list.count { mirrorReplaceLocked(s, keep) }
            specials.bySpan[base] = keep
        }
        // Queued under the specials lock, so that a root scan never sees a record
        // neither in the table nor in the queue.
        if !jobs.isEmpty { finalizerQueue.enqueue(jobs, finalizers: finalizers, cleanups: cleanups) }
    }

    /// A weak handle's object died or is being finalized: from now on the handle reads
    /// as nil (release: a reader that sees 0 sees it for good).
    func clearWeakHandle(_ handle: UInt) {
        tc_store_release(UnsafeMutableRawPointer(bitPattern: handle)!, 0)
    }

    // MARK: the debugger mirror (see the top of this file)

    /// The C record of `sp`.
    static func debugRecord(_ sp: Special) -> tc_debug_special {
        tc_debug_special(addr: UInt64(sp.addr), kind: UInt64(sp.kind.rawValue), id: sp.id, arg: UInt64(sp.arg))
    }

    /// Room for one more record in `s`'s mirror (allocating or doubling it).
    private func mirrorReserveLocked(_ s: UnsafeMutablePointer<MSpan>, _ n: UInt32) {
        if s.pointee.debugSpecials != nil && n <= s.pointee.debugSpecialCap { return }
        var cap = Swift.max(s.pointee.debugSpecialCap, 4)
        while cap < n { cap = cap &* 2 }
        let bytes = Int(cap) * MemoryLayout<tc_debug_special>.stride
        // Referenced only from the span (mmap'ed metadata): untracked for LeakSanitizer.
        guard let p = tc_untracked_realloc(s.pointee.debugSpecials.map(UnsafeMutableRawPointer.init), bytes) else {
            runtimeFatal("out of memory: cannot grow the debugger's copy of a span's specials to \(bytes) bytes")
        }
        if s.pointee.debugSpecials == nil { specials.mirrors += 1 }
        s.pointee.debugSpecials = p.bindMemory(to: tc_debug_special.self, capacity: Int(cap))
        s.pointee.debugSpecialCap = cap
    }

    /// `sp` was inserted at index `i` of `s`'s list. Specials lock held.
    func mirrorInsertLocked(_ s: UnsafeMutablePointer<MSpan>, _ sp: Special, at i: Int) {
        let n = Int(s.pointee.debugSpecialCount)
        mirrorReserveLocked(s, UInt32(n + 1))
        let m = s.pointee.debugSpecials!
        if i < n { (m + i + 1).update(from: m + i, count: n - i) }   // overlapping: memmove
        m[i] = Heap.debugRecord(sp)
        s.pointee.debugSpecialCount = UInt32(n + 1)
    }

    /// The record at index `i` of `s`'s list was removed (the list is not empty). Specials lock held.
    func mirrorRemoveLocked(_ s: UnsafeMutablePointer<MSpan>, at i: Int) {
        let n = Int(s.pointee.debugSpecialCount)
        let m = s.pointee.debugSpecials!
        if i + 1 < n { (m + i).update(from: m + i + 1, count: n - i - 1) }
        s.pointee.debugSpecialCount = UInt32(n - 1)
    }

    /// `s`'s list is now `list` (not empty). Specials lock held.
    func mirrorReplaceLocked(_ s: UnsafeMutablePointer<MSpan>, _ list: [Special]) {
        mirrorReserveLocked(s, UInt32(list.count))
        let m = s.pointee.debugSpecials!
        for (k, sp) in list.enumerated() { m[k] = Heap.debugRecord(sp) }
        s.pointee.debugSpecialCount = UInt32(list.count)
    }

    /// `s` has no records any more. Specials lock held.
    func mirrorFreeLocked(_ s: UnsafeMutablePointer<MSpan>) {
        guard let m = s.pointee.debugSpecials else { return }
        s.pointee.debugSpecials = nil
        s.pointee.debugSpecialCount = 0
        s.pointee.debugSpecialCap = 0
        free(m)
        specials.mirrors -= 1
    }

    /// The mirror of `s` equals `list`. Specials lock held.
    func checkMirror(_ s: UnsafeMutablePointer<MSpan>, _ list: [Special]) {
        guard let m = s.pointee.debugSpecials else { runtimeFatal("specials: span \(Ref(address: s.pointee.startAddr)) has records but no debugger mirror") }
        runtimeCheck(Int(s.pointee.debugSpecialCount) == list.count && s.pointee.debugSpecialCount <= s.pointee.debugSpecialCap,
                     "specials: debugger mirror of \(Ref(address: s.pointee.startAddr)) holds \(s.pointee.debugSpecialCount) records (room for \(s.pointee.debugSpecialCap)), the list \(list.count)")
        for (k, sp) in list.enumerated() {
            let r = m[k], w = Heap.debugRecord(sp)
            runtimeCheck(r.addr == w.addr && r.kind == w.kind && r.id == w.id && r.arg == w.arg,
                         "specials: debugger mirror of \(Ref(address: s.pointee.startAddr)) differs from the list at record \(k)")
        }
    }

    /// Checks the invariants at the top of this file (tests, checked mode). Takes the
    /// specials lock; the caller must not be sweeping.
    func checkSpecialsInvariants() {
        specials.lock.withLock {
            var total = 0, weak = 0, prof = 0
            for (base, list) in specials.bySpan {
                guard let s = spanOf(base) else { runtimeFatal("specials: records for \(Ref(address: base)), which is not a span") }
                runtimeCheck(s.pointee.startAddr == base, "specials: list keyed by \(base) is not a span start")
                runtimeCheck(s.specialsBits & UnsafeMutablePointer<MSpan>.specialsBit != 0, "specials: span with records lacks the specials bit")
                runtimeCheck(!list.isEmpty, "specials: empty list kept")
                for k in list.indices {
                    let sp = list[k]
                    runtimeCheck(sp.addr >= base && sp.addr < s.pointee.limit, "specials: record outside its span")
                    if k > 0 {
                        let p = list[k - 1]
                        runtimeCheck(p.addr < sp.addr || (p.addr == sp.addr && p.kind <= sp.kind), "specials: list not sorted")
                        if p.addr == sp.addr && p.kind == sp.kind {
                            runtimeCheck(sp.kind == .cleanup || sp.kind == .swiftBox, "specials: two records of kind \(sp.kind) for one object")
                        }
                    }
                    if sp.kind == .weakHandle { weak += 1 }
                    if sp.kind == .profile { prof += 1 }
                }
                total += list.count
                checkMirror(s, list)
            }
            runtimeCheck(specials.mirrors == specials.bySpan.count, "specials: \(specials.mirrors) debugger mirrors for \(specials.bySpan.count) spans with records")
            runtimeCheck(total == specials.count, "specials: count \(specials.count), records \(total)")
            runtimeCheck(weak == specials.weakHandles, "specials: weak count \(specials.weakHandles), records \(weak)")
            runtimeCheck(prof == specials.profileRecords, "specials: profile count \(specials.profileRecords), records \(prof)")
        }
    }
}
