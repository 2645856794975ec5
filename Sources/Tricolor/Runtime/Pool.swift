import CTricolor
import Glibc

// Pool: a cache of reusable heap objects (Go's sync.Pool, pool.go, with the victim
// cache of Go 1.13).
//
// Each attached mutator has a pool index (a small number, reused after detach: Go's P
// id), and each pool a local per index: a private slot and a shared double-ended
// queue. `put` fills the caller's private slot, else pushes on the head of its queue;
// `get` takes the private slot, else the head of its own queue, else steals from the
// tail of another mutator's queue, else looks in the victim caches the same way, else
// calls `new` (a miss). At the start of every collection (pause #1, world stopped) each
// local's victim is dropped and its primary contents become the victim, so an object
// put and never taken again is gone after two collections, and a pool that is used
// keeps its objects across one (Go's poolCleanup).
//
// Go's shared queue is the lock-free poolChain; here each local has its own lock,
// which its owner takes uncontended (one pthread mutex, ~7 ns) and other mutators take
// only when they steal: as scalable for the owner, simpler to get right. The lock also
// covers the private slot, so that mutators whose indices share a local (more than
// `PoolStorage.localCount` attached at once) stay correct.
//
// Tracing. Pooled objects are ordinary heap objects; the pools are roots, scanned once
// per cycle with the other non-stack roots (Runtime/Specials.swift `scanLifecycleRoots`).
// While the collector marks, `put` shades the object it stores (the pool may already be
// scanned) and `get` shades the object it hands out (it moves from a root the collector
// may not have scanned yet to a stack that may already be scanned): the two halves of
// the hybrid barrier, for a root the barrier does not cover.
//
// Invariants: a ring holds `count` entries starting at `tail` (mod `capacity`); no
// entry in a ring or slot is 0; a pool's locals exist only while the pool is registered.
// Locking: `Heap.poolsLock` (rank pools) guards the registry; each local's lock (rank
// poolLocal) guards that local; the registry lock may be held while taking a local's.

/// One ring of pooled addresses (owner pushes and pops at the head, thieves take the
/// tail). Raw memory; `PoolLocal.lock`.
struct PoolRing {
    var items: UnsafeMutablePointer<UInt>?
    var capacity = 0
    var tail = 0
    var count = 0

    mutating func pushHead(_ v: UInt) {
        if count == capacity { grow() }
        items![(tail + count) % capacity] = v
        count += 1
    }
    mutating func popHead() -> UInt {
        if count == 0 { return 0 }
        count -= 1
        return items![(tail + count) % capacity]
    }
    mutating func popTail() -> UInt {
        if count == 0 { return 0 }
        let v = items![tail]
        tail = (tail + 1) % capacity
        count -= 1
        return v
    }
    private mutating func grow() {
        let n = max(8, capacity * 2)
        let p = UnsafeMutablePointer<UInt>.allocate(capacity: n)
        for i in 0..<count { p[i] = items![(tail + i) % capacity] }
        items?.deallocate()
        items = p; capacity = n; tail = 0
    }
    func forEach(_ body: (UInt) -> Void) { for i in 0..<count { body(items![(tail + i) % capacity]) } }
    mutating func free() { items?.deallocate(); self = PoolRing() }
}

/// One mutator index's part of a pool. Raw memory, all fields under `lock`, except
/// `privateSlot` and `privateHits`: while one mutator owns the local (its index is
/// below `PoolStorage.localCount`, so no other mutator shares it) the owner reads and
/// writes them without the lock (Go's pinned P), with atomic loads and stores; the root
/// scan reads them atomically, and pause #1 changes them with the owner stopped. A
/// mutator with a larger index shares the local's queue but never its private slot.
struct PoolLocal {
    /// Never read: other threads read `lock` through `lockWithoutAccess` and must find
    /// nothing at offset 0, where a Swift access to the whole struct (by the thread
    /// holding the lock) is recorded by ThreadSanitizer.
    var pad: UInt = 0
    let lock: RuntimeLock
    var privateSlot: UInt = 0
    var privateHits = 0
    var shared = PoolRing()
    var victimPrivate: UInt = 0
    var victimShared = PoolRing()
    var hits = 0
    var misses = 0
}

extension UnsafeMutablePointer where Pointee == PoolLocal {
    /// The local's lock, read at its offset rather than through `pointee` (a Swift
    /// access to the whole struct would overlap the lock holder's; see `pad`).
    var lock: RuntimeLock {
        UnsafeRawPointer(self).load(fromByteOffset: MemoryLayout<PoolLocal>.offset(of: \PoolLocal.lock)!, as: RuntimeLock.self)
    }
    var privateAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self) + MemoryLayout<PoolLocal>.offset(of: \PoolLocal.privateSlot)! }
    var privateHitsAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self) + MemoryLayout<PoolLocal>.offset(of: \PoolLocal.privateHits)! }
    /// The private slot (atomic load).
    var privateValue: UInt {
        get { tc_load_acquire(UnsafeRawPointer(privateAddress)) }
        nonmutating set { tc_store_release(privateAddress, newValue) }
    }
    var hitsTotal: Int { pointee.hits + Int(bitPattern: tc_load_relaxed(UnsafeRawPointer(privateHitsAddress))) }
}

/// A pool's locals (one per mutator index, created by their first user). Registered
/// with the heap while the `Pool` lives.
final class PoolStorage: @unchecked Sendable {
    static let localCount = 64
    /// Local i, published with a release store by whoever creates it under `createLock`.
    let locals: UnsafeMutablePointer<UnsafeMutablePointer<PoolLocal>?>
    let createLock = RuntimeLock(rank: .pools)
    /// Checked mode: the locals' locks are rank-checked.
    let ranked: Bool

    init(ranked: Bool) {
        self.ranked = ranked
        if ranked { createLock.enableRanking() }
        locals = .allocate(capacity: PoolStorage.localCount)
        locals.initialize(repeating: nil, count: PoolStorage.localCount)
    }

    func local(_ i: Int) -> UnsafeMutablePointer<PoolLocal>? { PoolStorage.local(locals, i) }

    /// Local `i` of the table `locals`, if created (acquire load; no class access, so
    /// no reference count is touched on the hot path).
    @inline(__always)
    static func local(_ locals: UnsafeMutablePointer<UnsafeMutablePointer<PoolLocal>?>, _ i: Int) -> UnsafeMutablePointer<PoolLocal>? {
        UnsafeMutablePointer<PoolLocal>(bitPattern: tc_load_acquire(UnsafeRawPointer(locals + i)))
    }

    func localCreating(_ i: Int) -> UnsafeMutablePointer<PoolLocal> {
        if let l = local(i) { return l }
        return createLock.withLock {
            if let l = local(i) { return l }
            // Each local on cache lines of its own: two mutators' locals must not
            // share one (Go pads poolLocal to 128 bytes for the same reason).
            let bytes = (MemoryLayout<PoolLocal>.stride + 127) & ~127
            let l = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 128).bindMemory(to: PoolLocal.self, capacity: 1)
            l.initialize(to: PoolLocal(lock: RuntimeLock(rank: .poolLocal)))
            if ranked { l.lock.enableRanking() }
            UnsafeMutableRawPointer(locals + i).withMemoryRebound(to: UInt.self, capacity: 1) {
                tc_store_release($0, UInt(bitPattern: l))
            }
            return l
        }
    }

    func forEachLocal(_ body: (UnsafeMutablePointer<PoolLocal>) -> Void) {
        for i in 0..<PoolStorage.localCount { if let l = local(i) { body(l) } }
    }

    deinit {
        forEachLocal { l in
            l.pointee.shared.free(); l.pointee.victimShared.free(); l.lock.destroy()
            l.deinitialize(count: 1); UnsafeMutableRawPointer(l).deallocate()
        }
        locals.deallocate()
        createLock.destroy()
    }
}

/// A set of temporary heap objects that may be reused (Go's sync.Pool).
///
/// `get` returns an object some mutator `put` earlier, or a new one from `new`, or
/// `Ref.null` when the pool is empty and has no `new`. Anything in the pool may be
/// dropped at any collection: an object put and not taken survives the next
/// collection in the victim cache and is dropped by the one after (Go's sync.Pool). Use a pool for scratch objects whose allocation is
/// worth saving across a busy stretch (buffers, per-request state), never for objects
/// whose contents must persist. Pooled objects are heap objects: the pool keeps them
/// alive and the collector traces them.
///
/// Safe to use from any number of mutators; each uses its own part of the pool and
/// takes from the others only when its own is empty. Create with `Heap.makePool(new:)`.
public final class Pool: @unchecked Sendable {
    let storage: PoolStorage
    /// `storage.locals`, copied so that get/put reach a local without touching the
    /// storage object (a retain/release there would be an atomic on a line both
    /// mutators share).
    let locals: UnsafeMutablePointer<UnsafeMutablePointer<PoolLocal>?>
    /// Keeps the heap alive while the pool lives.
    let heap: Heap
    /// The same heap for `get` and `put`, without a retain/release per call (two
    /// mutators touching one reference count would share a cache line).
    let unretainedHeap: Unmanaged<Heap>
    /// `heap.checked`, read without touching the heap.
    let checked: Bool
    let new: (@Sendable (Mutator) -> Ref)?

    init(heap: Heap, new: (@Sendable (Mutator) -> Ref)?) {
        self.heap = heap
        self.new = new
        unretainedHeap = Unmanaged.passUnretained(heap)
        checked = heap.checked
        storage = PoolStorage(ranked: heap.checked)
        locals = storage.locals
        heap.poolsLock.withLock { heap.pools[ObjectIdentifier(storage)] = storage }
    }

    deinit {
        let (h, m) = hitsAndMisses
        heap.poolsLock.withLock {
            heap.pools[ObjectIdentifier(storage)] = nil
            heap.retiredPoolHits += h
            heap.retiredPoolMisses += m
        }
    }

    /// Put `object` in the pool for reuse (Go's Pool.Put). Null is ignored. The caller
    /// must not use `object` afterwards unless it gets it back with `get`.
    public func put(_ m: Mutator, _ object: Ref) {
        m.checkUsable("Pool.put")
        if object.isNull { return }
        // While marking (this mutator's barrier is on), shade it: see the top of the file.
        if checked || m.state.flags & MutatorState.flagBarrier != 0 {
            unretainedHeap._withUnsafeGuaranteedRef { h in
                if checked { h.checkRef(object, .root) }
                h.shadeNewSpecial(markThrough: 0, grey: object.address)
            }
        }
        let index = m.state.pointee.poolIndex
        let i = index % PoolStorage.localCount
        let l = PoolStorage.local(locals, i) ?? storage.localCreating(i)
        if index < PoolStorage.localCount && l.privateValue == 0 {
            l.privateValue = object.address      // sole owner: no lock
            return
        }
        // A mutator sharing the local (index ≥ localCount) never touches its private
        // slot, which belongs to the local's owner.
        l.lock.withLock { l.pointee.shared.pushHead(object.address) }
    }

    /// Take an object from the pool (Go's Pool.Get): the caller's own, else one stolen
    /// from another mutator, else one from the victim cache, else `new(m)` (or
    /// `Ref.null` without `new`). Keep the result in a frame slot like any new object.
    public func get(_ m: Mutator) -> Ref {
        m.checkUsable("Pool.get")
        let index = m.state.pointee.poolIndex
        let me = index % PoolStorage.localCount
        let own = PoolStorage.local(locals, me) ?? storage.localCreating(me)
        var x: UInt = 0
        if index < PoolStorage.localCount {
            // Sole owner: the private slot without the lock.
            x = own.privateValue
            if x != 0 {
                own.privateValue = 0
                let h = own.privateHitsAddress
                tc_store_relaxed(h, tc_load_relaxed(UnsafeRawPointer(h)) &+ 1)
            }
        }
        if x == 0 {
            x = own.lock.withLock {
                let v = own.pointee.shared.popHead()
                if v != 0 { own.pointee.hits += 1 }
                return v
            }
        }
        if x == 0 { x = getSlow(me, own) }
        if x != 0 {
            if m.state.flags & MutatorState.flagBarrier != 0 {
                unretainedHeap._withUnsafeGuaranteedRef { $0.shadeNewSpecial(markThrough: 0, grey: x) }
            }
            return Ref(address: x)
        }
        own.lock.withLock { own.pointee.misses += 1 }
        return new?(m) ?? .null
    }

    /// Steal from the other locals' queues, then try the victim caches (Go's getSlow).
    private func getSlow(_ me: Int, _ own: UnsafeMutablePointer<PoolLocal>) -> UInt {
        let n = PoolStorage.localCount
        for k in 1..<n {
            guard let l = PoolStorage.local(locals, (me + k) % n) else { continue }
            let v = l.lock.withLock { l.pointee.shared.popTail() }
            if v != 0 { own.lock.withLock { own.pointee.hits += 1 }; return v }
        }
        for k in 0..<n {
            guard let l = PoolStorage.local(locals, (me + k) % n) else { continue }
            let v: UInt = l.lock.withLock {
                if k == 0 {
                    let p = l.pointee.victimPrivate
                    if p != 0 { l.pointee.victimPrivate = 0; return p }
                }
                return k == 0 ? l.pointee.victimShared.popHead() : l.pointee.victimShared.popTail()
            }
            if v != 0 { own.lock.withLock { own.pointee.hits += 1 }; return v }
        }
        return 0
    }

    /// Objects in the pool now (primary and victim), for tests and diagnostics.
    public var count: Int {
        var n = 0
        storage.forEachLocal { l in
            l.lock.withLock {
                n += (l.privateValue != 0 ? 1 : 0) + l.pointee.shared.count
                n += (l.pointee.victimPrivate != 0 ? 1 : 0) + l.pointee.victimShared.count
            }
        }
        return n
    }

    /// `get` calls answered from the pool, and those that were not (`new` called or
    /// null returned).
    public var hitsAndMisses: (hits: Int, misses: Int) {
        var h = 0, m = 0
        storage.forEachLocal { l in l.lock.withLock { h += l.hitsTotal; m += l.pointee.misses } }
        return (h, m)
    }
}

extension Heap {
    /// A new, empty pool (Go's sync.Pool{New: new}).
    /// - Parameter new: makes an object when the pool has none (Go's Pool.New); without
    ///   it `get` returns `Ref.null` then. Called on the mutator calling `get`.
    public func makePool(new: (@Sendable (Mutator) -> Ref)? = nil) -> Pool {
        Pool(heap: self, new: new)
    }

    /// Pause #1 (world stopped): drop the victims, primaries become victims (Go's
    /// poolCleanup).
    func clearPools() {
        poolsLock.withLock {
            for (_, p) in pools {
                p.forEachLocal { l in
                    l.lock.withLock {
                        l.pointee.victimShared.free()
                        l.pointee.victimShared = l.pointee.shared
                        l.pointee.shared = PoolRing()
                        l.pointee.victimPrivate = l.privateValue
                        l.privateValue = 0
                    }
                }
            }
        }
    }

    /// Calls `body` with every pooled object (primary and victim); returns the entries read.
    /// Used by the root scan on collector threads.
    func forEachPooled(_ body: (UInt) -> Void) -> Int {
        var n = 0
        poolsLock.lock()   // not withLock: no closure capturing the heap (Heap.scanGlobalRoots)
        defer { poolsLock.unlock() }
        for (_, p) in pools {
            p.forEachLocal { l in
                l.lock.withLock {
                    func grey(_ v: UInt) { if v != 0 { body(v) } }
                    grey(l.privateValue)
                    grey(l.pointee.victimPrivate)
                    l.pointee.shared.forEach(grey)
                    l.pointee.victimShared.forEach(grey)
                    n += 2 + l.pointee.shared.count + l.pointee.victimShared.count
                }
            }
        }
        return n
    }

    /// Hits and misses of every pool, live or gone.
    var poolTotals: (hits: Int, misses: Int) {
        poolsLock.withLock {
            var h = retiredPoolHits, m = retiredPoolMisses
            for (_, p) in pools {
                p.forEachLocal { l in l.lock.withLock { h += l.hitsTotal; m += l.pointee.misses } }
            }
            return (h, m)
        }
    }
}
