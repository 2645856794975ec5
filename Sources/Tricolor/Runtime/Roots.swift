import CTricolor
import Glibc

// Roots outside mutator stacks: global root slots (Go's data/BSS pointers) and handles
// (persistent roots any thread may hold, like cppgc's Persistent). Both live in slot
// tables made of fixed 8 KiB chunks that never move, so a slot's address is stable.
// The globals lock guards the tables. The collector scans them during concurrent mark,
// once per cycle, under the globals lock (Collector/Mark.swift `scanGlobalRoots`); a
// slot overwritten after that scan had its old value shaded by the write barrier.

struct RootSlotTable {
    static let slotsPerChunk = 1024
    static let maxChunks = 16384
    /// The most live slots a table holds: 16 777 216 globals, and as many handles.
    static let maxRootSlots = slotsPerChunk * maxChunks
    /// What a table's slots are, for the message when it is full.
    enum Kind { case global, handle }
    let chunks: UnsafeMutablePointer<UnsafeMutablePointer<UInt>?>
    /// `maxChunks`, or fewer for a test of the limit.
    let chunkLimit: Int
    var numChunks = 0
    var used = 0                   // slots handed out (high-water mark)
    var freeList: [Int] = []       // released handle slots

    init(maxChunks: Int = RootSlotTable.maxChunks) {
        chunkLimit = maxChunks
        chunks = .allocate(capacity: maxChunks)
        chunks.initialize(repeating: nil, count: maxChunks)
    }

    func destroy() {
        for i in 0..<numChunks { chunks[i]!.deallocate() }
        chunks.deallocate()
    }

    /// A zeroed slot. Globals lock held. Every slot live and the table at its limit is
    /// the program's doing (it keeps too many globals or handles), and the fatal error
    /// says so.
    mutating func take(_ kind: Kind) -> UnsafeMutablePointer<UInt> {
        if let i = freeList.popLast() { return slot(i) }
        if used == numChunks * RootSlotTable.slotsPerChunk {
            if _slowPath(numChunks >= chunkLimit) { tooManyLive(kind) }
            let c = UnsafeMutablePointer<UInt>.allocate(capacity: RootSlotTable.slotsPerChunk)
            c.initialize(repeating: 0, count: RootSlotTable.slotsPerChunk)
            chunks[numChunks] = c
            numChunks += 1
        }
        used += 1
        return slot(used - 1)
    }

    /// The fatal error for a full table, naming the limit.
    @inline(never)
    func tooManyLive(_ kind: Kind) -> Never {
        let (call, what) = kind == .global ? ("makeGlobal", "globals") : ("makeHandle", "handles")
        runtimeFatal("\(call): more than \(chunkLimit * RootSlotTable.slotsPerChunk) live \(what) (the limit); release \(what) you no longer need")
    }

    func slot(_ i: Int) -> UnsafeMutablePointer<UInt> {
        chunks[i / RootSlotTable.slotsPerChunk]! + i % RootSlotTable.slotsPerChunk
    }

    /// The index of slot `p` in this table, or nil if it is not one of its slots.
    func index(of p: UnsafeMutablePointer<UInt>) -> Int? {
        for c in 0..<numChunks {
            let base = chunks[c]!
            if p >= base && p < base + RootSlotTable.slotsPerChunk { return c * RootSlotTable.slotsPerChunk + (p - base) }
        }
        return nil
    }

    mutating func release(_ p: UnsafeMutablePointer<UInt>) {
        tc_store_release(UnsafeMutableRawPointer(p), 0)
        if let i = index(of: p) { freeList.append(i) }
    }

    var bytes: Int { numChunks * RootSlotTable.slotsPerChunk * 8 }

    func forEach(_ body: (UInt) -> Void) {
        for i in 0..<used {
            // Mutators store into slots with atomic release stores, without this lock.
            let v = tc_load_acquire(UnsafeRawPointer(slot(i)))
            if v != 0 { body(v) }
        }
    }
}

/// A global root slot (Go's package-level pointer variable). Lives as long as the heap,
/// or until `Heap.releaseGlobal(_:)`. Read it from any attached mutator; write it with
/// `Mutator.store(_:_:)`.
@frozen
public struct Global: @unchecked Sendable {
    @usableFromInline let slot: UnsafeMutablePointer<UInt>
    /// The object the global points to (null until stored).
    @inlinable public var value: Ref { Ref(address: tc_load_relaxed(UnsafeRawPointer(slot))) }
}

/// A persistent root that any thread may hold; the object it names stays alive until
/// the handle is released or deinitialized.
public final class Handle: @unchecked Sendable {
    @usableFromInline let slot: UnsafeMutablePointer<UInt>
    let heap: Heap
    init(heap: Heap, slot: UnsafeMutablePointer<UInt>) { self.heap = heap; self.slot = slot }
    /// The object the handle keeps alive (null once released).
    public var value: Ref { Ref(address: tc_load_acquire(UnsafeRawPointer(slot))) }
    deinit {
        // Deleting a root while marking: shade the old referent (the deletion barrier).
        let old = tc_load_acquire(UnsafeRawPointer(slot))
        heap.globalsLock.withLock { heap.handleSlots.release(slot) }
        heap.shadeFromAnyThread(old)
    }
}

extension Heap {
    /// A new global root slot, initially null. A heap holds at most 16 777 216 live
    /// globals (`releaseGlobal` gives one back); one more is a fatal error naming the
    /// limit.
    public func makeGlobal() -> Global {
        globalsLock.withLock { Global(slot: globalSlots.take(.global)) }
    }

    /// Give a global root slot back (Go has no such thing: its globals live as long as
    /// the program; ours are slots, and a program that makes them on the fly, one per
    /// interned symbol, say, must be able to free them). The object it named is no
    /// longer kept alive by it. Safe while the collector marks: the old value is shaded
    /// (the deletion barrier), as for any overwritten root. The slot may be handed out
    /// again by `makeGlobal`, so `global` must not be used afterwards, by any thread.
    /// Returns the value the global held.
    @discardableResult
    public func releaseGlobal(_ global: Global) -> Ref {
        let old = globalsLock.withLock {
            if checked {
                // Misuse that would hand one slot to two owners: a double release, or
                // a Global of another heap.
                guard let i = globalSlots.index(of: global.slot), i < globalSlots.used else {
                    runtimeFatal("releaseGlobal: the global does not belong to this heap")
                }
                if globalSlots.freeList.contains(i) { runtimeFatal("releaseGlobal: global slot \(i) released twice") }
            }
            let old = tc_load_acquire(UnsafeRawPointer(global.slot))
            globalSlots.release(global.slot)
            return old
        }
        shadeFromAnyThread(old)
        return Ref(address: old)
    }

    /// Global slots in use (made and not released), for tests and diagnostics.
    var globalsInUse: Int { globalsLock.withLock { globalSlots.used - globalSlots.freeList.count } }

    /// A handle keeping `ref` alive until the handle goes away. A heap holds at most
    /// 16 777 216 live handles; one more is a fatal error naming the limit.
    public func makeHandle(_ ref: Ref) -> Handle {
        if checked && !ref.isNull { checkRef(ref, .handle) }
        let h = globalsLock.withLock {
            let s = handleSlots.take(.handle)
            tc_store_release(UnsafeMutableRawPointer(s), ref.address)
            return Handle(heap: self, slot: s)
        }
        shadeFromAnyThread(ref.address)   // a new root while marking is grey
        return h
    }
}

extension Mutator {
    /// Store into a global root slot (barriered like any heap pointer store).
    @inlinable @inline(__always)
    public func store(_ global: Global, _ value: Ref) {
        if _slowPath(state.flags != 0) { return storeRootSlow(global.slot, value) }
        tc_store_release(UnsafeMutableRawPointer(global.slot), value.address)
    }

    /// Point a handle at another object.
    public func store(_ handle: Handle, _ value: Ref) {
        storeRootSlow(handle.slot, value)
    }

    @usableFromInline @inline(never)
    func storeRootSlow(_ slot: UnsafeMutablePointer<UInt>, _ value: Ref) {
        slowPathSafepoint()
        let flags = state.flags
        if flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 {
            checkUsable("root store")
            if !value.isNull { _ = state.heapUnretained._withUnsafeGuaranteedRef { $0.checkRef(value, .root) } }
        }
        if flags & MutatorState.flagBarrier != 0 { writeBarrier(UnsafeMutableRawPointer(slot), value.address) }
        tc_store_release(UnsafeMutableRawPointer(slot), value.address)
    }
}
