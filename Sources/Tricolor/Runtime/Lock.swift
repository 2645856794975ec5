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
// every lock it already holds. Checked mode (`GODEBUG=tricolorcheck=1`) enforces this.
//
//   0 markDone   the thread finishing a mark phase (tryLock only)
//   1 sched      world-stop coordination (mutator list, stop flag, mutator states)
//   2 background parking of the mark workers and the sweeper
//   3 globals    global root slots and handles
//   4 types      the type registry
//   5 mcentral   one per span class
//   6 mheap      page heap, arenas, span metadata, bitmap pool
//   7 work       the global grey list
//   8 stats      pause ring, stats snapshots
//   9 prof       heap profile buckets and specials
//  10 hooks      the installed allocation/free hooks
@usableFromInline
enum LockRank: Int, CaseIterable {
    case markDone = 0, sched, background, globals, types, mcentral, mheap, work, stats, prof, hooks
}

@usableFromInline
struct RuntimeLock: @unchecked Sendable {
    @usableFromInline let raw: OpaquePointer
    let rank: LockRank

    init(rank: LockRank) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: tc_lock_size(), alignment: 64)
        raw = OpaquePointer(p)
        self.rank = rank
        tc_lock_init(raw)
    }

    func destroy() {
        tc_lock_destroy(raw)
        UnsafeMutableRawPointer(raw).deallocate()
    }

    /// Acquire; a wait (the lock was held) is timed and counted, see MutexProfile.swift.
    @inline(__always) func lock() {
        LockRanking.willAcquire(rank)
        if _fastPath(tc_lock_try(raw)) { return }
        lockSlow()
    }

    @inline(never) func lockSlow() {
        let t0 = tc_nanotime()
        tc_lock_acquire(raw)
        LockWaits.shared.recordWait(rank, ns: tc_nanotime() - t0)
    }
    @inline(__always) func unlock() { tc_lock_release(raw); LockRanking.released(rank) }
    /// Acquire without waiting; false if another thread holds the lock.
    func tryLock() -> Bool {
        if tc_lock_try(raw) { LockRanking.willAcquire(rank); return true }
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

/// Per-thread record of held lock ranks, only maintained when rank checking is on.
enum LockRanking {
    nonisolated(unsafe) static var enabled = false


    // A small per-thread stack of held ranks, kept in a C thread-local would be ideal;
    // a bitmask in a __thread-free Swift form is enough: ranks are < 64.
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    @inline(__always) static func willAcquire(_ r: LockRank) {
        if _slowPath(enabled) { check(r) }
    }
    @inline(__always) static func released(_ r: LockRank) {
        if _slowPath(enabled) { drop(r) }
    }

    @inline(never) static func check(_ r: LockRank) {
        let held = UInt(bitPattern: pthread_getspecific(key))
        let higherOrEqual = held >> UInt(r.rawValue)
        if higherOrEqual != 0 {
            fatalError("tricolor: lock rank violation: acquiring \(r) (rank \(r.rawValue)) while holding a lock of rank ≥ \(r.rawValue) (held mask \(String(held, radix: 2)))")
        }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: held | (1 << UInt(r.rawValue))))
    }
    @inline(never) static func drop(_ r: LockRank) {
        let held = UInt(bitPattern: pthread_getspecific(key))
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: held & ~(1 << UInt(r.rawValue))))
    }
}
