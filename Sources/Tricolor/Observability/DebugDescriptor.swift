import CTricolor
import Glibc

// The debug descriptor (CTricolor's `tricolor_debug_descriptor`): how a debugger that
// knows nothing of Swift finds the heaps and reads them. Go's runtime-gdb.py reads Go's
// structures through DWARF types; Swift's class layouts are not described that way in
// a form gdb can use, so Tricolor writes down what a reader needs, explicitly:
//
// - the layout table (once per process, at the first heap's creation): the byte offset
//   of every field the gdb extension reads (`MSpan.startAddr`, `MutatorState.stackTop`,
//   …), struct strides, the word offsets of the shared counters, and constants (page
//   shift, arena size, the size-class table);
// - one slot per live heap: its address-space layout (arena base, the arena table, the
//   central lists, the shared words, the type registry, the page bitmaps), plus two
//   mirrors kept current on cold paths: the head of the attached-mutator list (attach
//   and detach, under the sched lock) and the type names (registration, types lock);
// - reached through those: two C copies of what Swift keeps in its own collections, so
//   that the reader needs no Swift at all: each span's lifecycle specials
//   (`MSpan.debugSpecials`, tc_debug_special records, kept by Runtime/Specials.swift
//   under the specials lock) and, in checked mode, each mutator's shadow-stack frames
//   (`MutatorState.debugFrames`, tc_debug_frame records, kept by Runtime/ShadowStack.swift
//   on the checked push and pop slow paths).
//
// Heaps also find each other here for the fatal-error dump (FatalDump.swift).
//
// Invariants: a slot's `heap` word is nonzero exactly while that heap is alive, and is
// written last at registration and first at removal; `type_count` is published (release)
// after the name it counts.

extension Heap {
    /// Fills this heap's slot of the descriptor (and the layout table on first use).
    /// Called at the end of `init`. More than 16 live heaps: the rest are not listed.
    func registerDebugDescriptor() {
        let d = tc_debug()!
        DebugLayout.publishOnce(d, shared: shared)
        let fields: [(String, UInt)] = [
            ("arenaBase", arenaBase), ("reservedBytes", reservedBytes), ("numArenas", UInt(numArenas)),
            ("arenas", UInt(bitPattern: arenas)), ("centrals", UInt(bitPattern: centrals)),
            ("shared", UInt(bitPattern: shared.block)), ("types", UInt(bitPattern: types)),
            ("zeroBase", zeroBase), ("emptySpan", UInt(bitPattern: emptySpan)),
            ("memProfileRate", UInt(configuration.memProfileRate)),
            ("pageBitmap", UInt(bitPattern: pages.bitmap)), ("pageScavenged", UInt(bitPattern: pages.scavenged)),
            ("conservativeStacks", conservativeStacks ? 1 : 0), ("maxTypes", UInt(maxTypes)),
            ("checked", checked ? 1 : 0),
        ]
        let table = DebugLayout.table(fields)
        let names = UnsafeMutablePointer<UInt>.allocate(capacity: maxTypes)
        names.initialize(repeating: 0, count: maxTypes)
        names[0] = UInt(bitPattern: strdup("<bytes>"))
        withUnsafeMutablePointer(to: &d.pointee.heaps) { tuple in
            tuple.withMemoryRebound(to: tc_debug_heap.self, capacity: Int(TC_DEBUG_MAX_HEAPS)) { heaps in
                for i in 0..<Int(TC_DEBUG_MAX_HEAPS) {
                    let slot = heaps + i
                    // Claim the slot with a placeholder, fill it, then publish the heap.
                    guard tc_cas(UnsafeMutableRawPointer(slot), 0, 1) else { continue }
                    slot.pointee.fields = UInt64(UInt(bitPattern: table))
                    slot.pointee.field_count = UInt64(fields.count)
                    slot.pointee.mutators = 0
                    slot.pointee.type_names = UInt64(UInt(bitPattern: names))
                    slot.pointee.type_count = 1
                    debugSlot = slot
                    tc_store_release(UnsafeMutableRawPointer(slot), UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()))
                    return
                }
                table.deallocate()
                free(UnsafeMutableRawPointer(bitPattern: names[0]))
                names.deallocate()
            }
        }
    }

    /// Clears this heap's slot (deinit).
    func unregisterDebugDescriptor() {
        guard let slot = debugSlot else { return }
        tc_store_release(UnsafeMutableRawPointer(slot), 1)   // not a heap any more; slot still claimed
        let names = UnsafeMutablePointer<UInt>(bitPattern: UInt(slot.pointee.type_names))!
        for i in 0..<Int(slot.pointee.type_count) { free(UnsafeMutableRawPointer(bitPattern: names[i])) }
        names.deallocate()
        UnsafeMutablePointer<tc_debug_field>(bitPattern: UInt(slot.pointee.fields))?.deallocate()
        slot.pointee.type_count = 0
        slot.pointee.mutators = 0
        tc_store_release(UnsafeMutableRawPointer(slot), 0)
        debugSlot = nil
    }

    /// Mirror the head of the attached-mutator list. Sched lock held.
    func debugNoteMutators() {
        guard let slot = debugSlot else { return }
        tc_store_release(UnsafeMutableRawPointer(slot) + MemoryLayout<tc_debug_heap>.offset(of: \tc_debug_heap.mutators)!,
                         UInt(bitPattern: mutators))
    }

    /// Mirror a newly registered type's name. Types lock held.
    func debugNoteType(_ id: Int, _ name: String) {
        guard let slot = debugSlot, id < maxTypes else { return }
        let names = UnsafeMutablePointer<UInt>(bitPattern: UInt(slot.pointee.type_names))!
        names[id] = UInt(bitPattern: strdup(name))
        tc_store_release(UnsafeMutableRawPointer(slot) + MemoryLayout<tc_debug_heap>.offset(of: \tc_debug_heap.type_count)!, UInt(id + 1))
    }

    /// The live heaps the descriptor lists (for the fatal-error dump), unretained.
    static func debugListedHeaps() -> [UnsafeMutableRawPointer] {
        let d = tc_debug()!
        var out: [UnsafeMutableRawPointer] = []
        withUnsafeMutablePointer(to: &d.pointee.heaps) { tuple in
            tuple.withMemoryRebound(to: tc_debug_heap.self, capacity: Int(TC_DEBUG_MAX_HEAPS)) { heaps in
                for i in 0..<Int(TC_DEBUG_MAX_HEAPS) {
                    let h = tc_load_acquire(UnsafeRawPointer(heaps + i))
                    if h > 1, let p = UnsafeMutableRawPointer(bitPattern: h) { out.append(p) }
                }
            }
        }
        return out
    }
}

/// The process-wide layout table.
enum DebugLayout {
    /// A C array of (name, value) entries, allocated for good (or until the heap's slot is freed).
    static func table(_ fields: [(String, UInt)]) -> UnsafeMutablePointer<tc_debug_field> {
        let t = UnsafeMutablePointer<tc_debug_field>.allocate(capacity: fields.count)
        for (i, (name, value)) in fields.enumerated() {
            var f = tc_debug_field()
            withUnsafeMutableBytes(of: &f.name) { buf in
                let bytes = Array(name.utf8.prefix(Int(TC_DEBUG_NAME_BYTES) - 1))
                for (k, b) in bytes.enumerated() { buf[k] = b }
                buf[bytes.count] = 0
            }
            f.value = UInt64(value)
            (t + i).initialize(to: f)
        }
        return t
    }

    static func publishOnce(_ d: UnsafeMutablePointer<tc_debug_descriptor>, shared: HeapShared) {
        if tc_load_acquire(UnsafeRawPointer(d) + MemoryLayout<tc_debug_descriptor>.offset(of: \tc_debug_descriptor.fields)!) != 0 { return }
        func o<T>(_ k: PartialKeyPath<T>) -> UInt { UInt(MemoryLayout<T>.offset(of: k)!) }
        func w(_ a: AtomicWord) -> UInt { UInt(bitPattern: a.address) - UInt(bitPattern: shared.block) }
        var f: [(String, UInt)] = [
            ("MSpan.size", UInt(MemoryLayout<MSpan>.stride)),
            ("MSpan.allocCache", o(\MSpan.allocCache)), ("MSpan.elemSize", o(\MSpan.elemSize)),
            ("MSpan.freeIndex", o(\MSpan.freeIndex)), ("MSpan.nelems", o(\MSpan.nelems)),
            ("MSpan.startAddr", o(\MSpan.startAddr)), ("MSpan.allocCount", o(\MSpan.allocCount)),
            ("MSpan.typeIDs", o(\MSpan.typeIDs)), ("MSpan.allocBits", o(\MSpan.allocBits)),
            ("MSpan.gcmarkBits", o(\MSpan.gcmarkBits)), ("MSpan.gcmarkBytes", o(\MSpan.gcmarkBytes)),
            ("MSpan.next", o(\MSpan.next)),
            ("MSpan.npages", o(\MSpan.npages)), ("MSpan.limit", o(\MSpan.limit)),
            ("MSpan.largeType", o(\MSpan.largeType)), ("MSpan.sweepgen", o(\MSpan.sweepgen)),
            ("MSpan.divMul", o(\MSpan.divMul)), ("MSpan.spanClass", o(\MSpan.spanClass)),
            ("MSpan.state", o(\MSpan.state)), ("MSpan.bitmapWords", o(\MSpan.bitmapWords)),
            ("MSpan.heldCache", o(\MSpan.heldCache)), ("MSpan.hasSpecials", o(\MSpan.hasSpecials)),
            ("MSpan.debugSpecials", o(\MSpan.debugSpecials)), ("MSpan.debugSpecialCount", o(\MSpan.debugSpecialCount)),
            ("special.size", UInt(MemoryLayout<tc_debug_special>.stride)),
            ("special.addr", o(\tc_debug_special.addr)), ("special.kind", o(\tc_debug_special.kind)),
            ("special.id", o(\tc_debug_special.id)), ("special.arg", o(\tc_debug_special.arg)),
            ("specialKind.finalizer", UInt(SpecialKind.finalizer.rawValue)), ("specialKind.weakHandle", UInt(SpecialKind.weakHandle.rawValue)),
            ("specialKind.cleanup", UInt(SpecialKind.cleanup.rawValue)), ("specialKind.swiftBox", UInt(SpecialKind.swiftBox.rawValue)),
            ("specialKind.profile", UInt(SpecialKind.profile.rawValue)),
            ("MutatorState.mcache", o(\MutatorState.mcache)), ("MutatorState.stack", o(\MutatorState.stack)),
            ("MutatorState.stackTop", o(\MutatorState.stackTop)), ("MutatorState.stackCap", o(\MutatorState.stackCap)),
            ("MutatorState.nativeStackLo", o(\MutatorState.nativeStackLo)), ("MutatorState.nativeStackHi", o(\MutatorState.nativeStackHi)),
            ("MutatorState.status", o(\MutatorState.status)), ("MutatorState.statusBytes", UInt(MemoryLayout<MutatorStatus>.size)), ("MutatorState.next", o(\MutatorState.next)),
            ("MutatorState.threadID", o(\MutatorState.threadID)), ("MutatorState.id", o(\MutatorState.id)),
            ("MutatorState.debugFrames", o(\MutatorState.debugFrames)), ("MutatorState.debugFrameCount", o(\MutatorState.debugFrameCount)),
            ("frame.size", UInt(MemoryLayout<tc_debug_frame>.stride)),
            ("frame.offset", o(\tc_debug_frame.offset)), ("frame.slots", o(\tc_debug_frame.slots)),
            ("MCache.spans", o(\MCache.spans)), ("MCache.tinyAllocs", o(\MCache.tinyAllocs)),
            ("MCache.uncached", o(\MCache.uncached)), ("MCache.stash", o(\MCache.stash)),
            ("MCentral.size", UInt(MemoryLayout<MCentral>.stride)), ("MCentral.heads", o(\MCentral.heads)),
            ("HeapArena.spans", o(\HeapArena.spans)),
            ("TypeInfo.size", UInt(MemoryLayout<TypeInfo>.stride)), ("TypeInfo.bytes", o(\TypeInfo.size)),
            ("TypeInfo.ptrWords", o(\TypeInfo.ptrWords)), ("TypeInfo.numPtrWords", o(\TypeInfo.numPtrWords)),
            ("shared.sweepgen", w(shared.sweep.sweepgen)), ("shared.phase", w(shared.marking.phase)),
            ("shared.numGC", w(shared.marking.numGC)), ("shared.heapLive", w(shared.gcController.heapLive)),
            ("shared.trigger", w(shared.gcController.trigger)), ("shared.heapGoal", w(shared.gcController.heapGoal)),
            ("shared.heapInuse", w(shared.heapStats.heapInuse)), ("shared.heapSys", w(shared.heapStats.heapSys)),
            ("shared.keptEmptyBytes", w(shared.heapStats.keptEmptyBytes)), ("shared.keptEmptyBytesTaken", w(shared.heapStats.keptEmptyBytesTaken)),
            ("shared.heapReleased", w(shared.heapStats.heapReleased)), ("shared.stackInuse", w(shared.heapStats.stackInuse)),
            ("shared.largeAllocCount", w(shared.heapStats.largeAllocCount)), ("shared.largeFreeCount", w(shared.heapStats.largeFreeCount)),
            ("shared.smallAllocs", UInt(bitPattern: shared.heapStats.smallAllocs.base) - UInt(bitPattern: shared.block)),
            ("shared.smallFrees", UInt(bitPattern: shared.heapStats.smallFrees.base) - UInt(bitPattern: shared.block)),
            ("pageShift", SizeClassTable.pageShiftU), ("arenaLogBytes", HeapArena.logBytes),
            ("pagesPerArena", UInt(HeapArena.pagesPerArena)), ("numSpanClasses", UInt(SpanClass.count)), ("numCacheSlots", UInt(MCache.slotCount)),
            ("numSizeClasses", UInt(SizeClassTable.numSizeClasses)), ("arrayTypeBit", UInt(arrayTypeBit)),
            ("spanState.inUse", UInt(MSpanState.inUse.rawValue)), ("spanState.manual", UInt(MSpanState.manual.rawValue)),
            ("status.running", UInt(MutatorStatus.running.rawValue)), ("status.parked", UInt(MutatorStatus.parked.rawValue)),
            ("status.blocking", UInt(MutatorStatus.blocking.rawValue)), ("status.detached", UInt(MutatorStatus.detached.rawValue)),
        ]
        for c in 0..<SizeClassTable.numSizeClasses { f.append(("classToSize.\(c)", UInt(SizeClassTable.classToSize[c]))) }
        let t = table(f)
        let base = UnsafeMutableRawPointer(d)
        // Count first, then the table (release): a reader that sees the table sees its count.
        base.storeBytes(of: UInt64(f.count), toByteOffset: MemoryLayout<tc_debug_descriptor>.offset(of: \tc_debug_descriptor.field_count)!, as: UInt64.self)
        if !tc_cas(base + MemoryLayout<tc_debug_descriptor>.offset(of: \tc_debug_descriptor.fields)!, 0, UInt(bitPattern: t)) {
            t.deallocate()   // another heap's init published it first (the same values)
        }
    }
}
