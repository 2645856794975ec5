import CTricolor
import Glibc

// Runtime locks.
//
// A `RuntimeLock` is a pthread mutex in memory the runtime allocated itself (never in
// Swift's heap, never moved), so it can sit inside raw metadata structs. The platform
// notes measured pthread_mutex at ~6.5 ns uncontended against ~18 ns for
// Synchronization.Mutex, and these locks sit on refill paths.
//
// Lock ranks (lowest first). A thread may only acquire a lock whose rank is higher than
// every lock it already holds (Go's lockrank.go, as a total order). Checked mode
// (`GODEBUG=tricolorcheck=1`, `Configuration.checked`) enforces it for the locks of that
// heap only: each lock carries its own "ranked" flag, set once when its heap is created,
// so an unchecked heap in the same process pays one predictable branch per lock and
// never records anything.
//
//   0 markDone   the thread finishing a mark phase (tryLock only)
//   1 sched      world-stop coordination (mutator list, stop flag, mutator states)
//   2 background parking of the mark workers and the sweeper
//   3 globals    global root slots and handles
//   4 types      the type registry
//   5 mcentral   one per span class
//   6 stackpool  the stack pool and the free large stacks (Allocator/StackAlloc.swift)
//   7 mheap      page heap, arenas, span metadata, bitmap pool
//   8 work       the global grey list
//   9 stats      pause ring, stats snapshots, pacer settings and memory inputs
//  10 prof       heap profile buckets and specials
//  11 hooks      the installed allocation/free hooks
//  12 limiter    the GC CPU limiter's bucket (a leaf: nothing is taken under it)
//  13 specials   finalizer/weak/cleanup/box records (Runtime/Specials.swift); taken with
//                no other lock held, except finq under it
//  14 finq       the finalizer queue (Runtime/Finalizers.swift)
//  15 pools      the pool registry and a pool's local creation (Runtime/Pool.swift)
//  16 poolLocal  one pool local (under pools in the root scan and pause #1)
//
// mheap below stats is what Go's lockrank.go has too (mheap before the stats/trace
// leaves): code that needs heap-lock data for pacing reads it first, then takes the
// stats lock (see `refreshMemoryLimitTrigger`). Every lock a heap creates must be listed
// in `Heap.enableLockRanking`.
@usableFromInline
enum LockRank: Int, CaseIterable {
    case markDone = 0, sched, background, globals, types, mcentral, stackpool, mheap, work, stats, prof, hooks, limiter, specials, finq, pools, poolLocal
}

@usableFromInline
struct RuntimeLock: @unchecked Sendable {
    /// The pthread mutex, `header` bytes into its allocation; the first byte of the
    /// allocation is the "ranked" flag.
    @usableFromInline let raw: OpaquePointer
    let rank: LockRank
    /// Bytes before the mutex: the flag, padded so the mutex keeps a cache line's alignment.
    static let header = 64

    init(rank: LockRank) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: RuntimeLock.header + tc_lock_size(), alignment: 64)
        p.storeBytes(of: false, as: Bool.self)
        raw = OpaquePointer(p + RuntimeLock.header)
        self.rank = rank
        tc_lock_init(raw)
    }

    func destroy() {
        tc_lock_destroy(raw)
        (UnsafeMutableRawPointer(raw) - RuntimeLock.header).deallocate()
    }

    /// Whether acquisitions of this lock are checked against the rank order.
    @inline(__always) var isRanked: Bool {
        (UnsafeMutableRawPointer(raw) - RuntimeLock.header).load(as: Bool.self)
    }

    /// Check this lock's rank from now on.
    /// - Precondition: no other thread uses the lock yet (heap creation).
    func enableRanking() {
        (UnsafeMutableRawPointer(raw) - RuntimeLock.header).storeBytes(of: true, as: Bool.self)
    }

    /// Acquire; a wait (the lock was held) is timed and counted, see MutexProfile.swift.
    @inline(__always) func lock() {
        if _slowPath(isRanked) { LockRanking.check(rank) }
        if _fastPath(tc_lock_try(raw)) { return }
        lockSlow()
    }

    @inline(never) func lockSlow() {
        let t0 = tc_nanotime()
        tc_lock_acquire(raw)
        LockWaits.shared.recordWait(rank, ns: tc_nanotime() - t0)
    }
    @inline(__always) func unlock() {
        tc_lock_release(raw)
        if _slowPath(isRanked) { LockRanking.drop(rank) }
    }
    /// Acquire without waiting; false if another thread holds the lock.
    func tryLock() -> Bool {
        if tc_lock_try(raw) {
            if _slowPath(isRanked) { LockRanking.check(rank) }
            return true
        }
        return false
    }

    @inline(__always)
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock(); defer { unlock() }
        return try body()
    }
}

@usableFromInline
struct RuntimeCond {
    let raw: OpaquePointer
    init() {
        let p = UnsafeMutableRawPointer.allocate(byteCount: tc_cond_size(), alignment: 64)
        raw = OpaquePointer(p)
        tc_cond_init(raw)
    }
    func destroy() { tc_cond_destroy(raw); UnsafeMutableRawPointer(raw).deallocate() }
    func wait(_ l: RuntimeLock) { tc_cond_wait(raw, l.raw) }
    func broadcast() { tc_cond_broadcast(raw) }
}

/// Per-thread record of the ranks of the ranked locks it holds: a bitmask (ranks < 64)
/// kept in a pthread key, touched only when a ranked lock is taken or released.
enum LockRanking {
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        let rc = pthread_key_create(&k, nil)
        if rc != 0 { runtimeFatal("lock ranking: pthread_key_create failed: \(String(cString: strerror(rc)))") }
        return k
    }()

    /// The ranks the calling thread holds (ranked locks only).
    static var heldMask: UInt { UInt(bitPattern: pthread_getspecific(key)) }

    @inline(never) static func check(_ r: LockRank) {
        let held = heldMask
        if held >> UInt(r.rawValue) != 0 {
            let names = LockRank.allCases.filter { held & (1 << UInt($0.rawValue)) != 0 }.map { "\($0.name) (rank \($0.rawValue))" }
            runtimeFatal("lock rank violation: acquiring \(r.name) (rank \(r.rawValue)) while holding \(names.joined(separator: ", "))")
        }
        setHeld(held | (1 << UInt(r.rawValue)))
    }
    @inline(never) static func drop(_ r: LockRank) {
        setHeld(heldMask & ~(1 << UInt(r.rawValue)))
    }
    private static func setHeld(_ mask: UInt) {
        // Fails only for lack of memory for the thread's key slots (ENOMEM).
        let rc = pthread_setspecific(key, UnsafeRawPointer(bitPattern: mask))
        if rc != 0 { runtimeFatal("lock ranking: pthread_setspecific failed: \(String(cString: strerror(rc)))") }
    }
}

extension Heap {
    /// Checked mode: rank every lock of this heap. Called once, at the end of `init`.
    func enableLockRanking() {
        for l in [heapLock, stackLock, typesLock, schedLock, globalsLock, markDoneLock, bgLock, statsLock,
                  hooksLock, limiterLock, work.lock, memProfiler.lock, specials.lock, finalizerQueue.lock, poolsLock] {
            l.enableRanking()
        }
        for i in 0..<SpanClass.count { centrals[i].lock.enableRanking() }
    }

    /// Whether this heap's locks are checked against the rank order.
    var lockRankingEnabled: Bool { heapLock.isRanked }
}

/// A value behind a plain pthread mutex, for process-wide state that no heap owns and
/// no hot path reads: test seams (`SysFaultInjection`) and test hooks
/// (`Heap.collectorUnitHook`). Unranked and unprofiled, unlike `RuntimeLock`.
/// Not `Synchronization.Mutex`: ThreadSanitizer does not see that mutex's lock on Linux,
/// and reported reads and writes of a value inside its `withLock` on two threads as a
/// data race.
final class PthreadLocked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Read and written only with `mutex` held.
    private var value: Value

    init(_ value: Value) {
        self.value = value
        let rc = pthread_mutex_init(mutex, nil)
        runtimeCheck(rc == 0, "tricolor: pthread_mutex_init failed (\(rc))")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    func get() -> Value { withLock { $0 } }
    func set(_ newValue: Value) { withLock { $0 = newValue } }
}
