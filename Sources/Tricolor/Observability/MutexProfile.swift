import CTricolor
import Glibc

// Lock contention (Go's mutex profile, for the runtime's own locks).
//
// A runtime lock is first tried without waiting; only when that fails does the
// acquiring thread time its wait. Every wait is added to per-lock totals (LockWaits),
// and with probability 1/rate (`setMutexProfileFraction`) the wait is also recorded
// with the waiter's call stack, like Go's SetMutexProfileFraction sampling. The pprof
// writer multiplies counts and delays by the rate, as Go's does.
//
// Go attributes sync.Mutex contention to the unlocker's stack; for runtime locks the
// waiter's stack is what says which allocation path waited, so that is what is kept.
//
// Process-wide, like Go's: the locks are not tied to one heap. The tables have their
// own pthread mutex (not a RuntimeLock, which would record into itself).

/// Wait totals for one kind of runtime lock.
public struct LockWaitStats: Sendable, Codable, Equatable {
    /// The lock's name, after its rank in the lock-rank table (`"mcentral"`, `"heap"`, …).
    public var lock: String
    /// Acquisitions that found the lock held and had to wait.
    public var waits: UInt64
    /// Nanoseconds spent waiting, summed over those waits.
    public var totalWaitNs: UInt64
    /// The longest single wait, in nanoseconds.
    public var maxWaitNs: UInt64
}

/// One row of the mutex profile: waits sampled at one stack (raw, not scaled by the rate).
public struct MutexProfileRecord: Sendable, Equatable {
    /// The waiter's return addresses, innermost first (symbolize with `Heap.symbolize(stack:)`
    /// from TricolorProfiling).
    public var stack: [UInt]
    /// Sampled waits at this stack.
    public var count: Int
    /// Nanoseconds those sampled waits took, summed.
    public var delayNs: Int
}

final class LockWaits: @unchecked Sendable {
    static let shared = LockWaits()
    /// Per rank: waits, total ns, max ns (atomic words).
    let words: UnsafeMutablePointer<UInt>
    let rankCount = LockRank.allCases.count
    /// Sampling: 0 = off, else one wait in `rate` (atomic word).
    let rateWord: UnsafeMutablePointer<UInt>
    let tableLock: OpaquePointer
    var records: [[UInt]: (count: Int, delay: Int)] = [:]
    var rng: UInt64 = 0x9e3779b97f4a7c15

    private init() {
        words = .allocate(capacity: LockRank.allCases.count * 3)
        words.initialize(repeating: 0, count: LockRank.allCases.count * 3)
        rateWord = .allocate(capacity: 1)
        rateWord.initialize(to: 0)
        let p = UnsafeMutableRawPointer.allocate(byteCount: tc_lock_size(), alignment: 64)
        tableLock = OpaquePointer(p)
        tc_lock_init(tableLock)
    }

    static func snapshot() -> [LockWaitStats] {
        let s = shared
        var out: [LockWaitStats] = []
        for r in LockRank.allCases {
            let w = s.words + r.rawValue * 3
            let n = tc_load_relaxed(w)
            if n == 0 { continue }
            out.append(LockWaitStats(lock: r.name, waits: UInt64(n), totalWaitNs: UInt64(tc_load_relaxed(w + 1)),
                                     maxWaitNs: UInt64(tc_load_relaxed(w + 2))))
        }
        return out
    }

    /// A thread waited `ns` for a lock of rank `rank`.
    @inline(never)
    func recordWait(_ rank: LockRank, ns: UInt64) {
        let w = words + rank.rawValue * 3
        _ = tc_fetch_add_relaxed(w, 1)
        _ = tc_fetch_add_relaxed(w + 1, UInt(ns))
        var m = tc_load_relaxed(w + 2)
        while UInt(ns) > m && !tc_cas(w + 2, m, UInt(ns)) { m = tc_load_relaxed(w + 2) }
        let rate = tc_load_relaxed(rateWord)
        if rate == 0 { return }
        var buf = [UInt](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBufferPointer { captureStack(skip: 2, into: $0.baseAddress!, max: 32) }
        tc_lock_acquire(tableLock)
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        if rate == 1 || rng % UInt64(rate) == 0 {
            let key = Array(buf[0..<n])
            let old = records[key] ?? (0, 0)
            // Saturating: the totals are estimates, and a stats table must not trap.
            let (delay, overflow) = old.delay.addingReportingOverflow(Int(clamping: ns))
            records[key] = (old.count &+ 1, overflow ? .max : delay)
        }
        tc_lock_release(tableLock)
    }

    func profile() -> [MutexProfileRecord] {
        tc_lock_acquire(tableLock)
        defer { tc_lock_release(tableLock) }
        return records.map { MutexProfileRecord(stack: $0.key, count: $0.value.count, delayNs: $0.value.delay) }
            .sorted { $0.delayNs > $1.delayNs }
    }
}

extension LockRank {
    var name: String {
        switch self {
        case .markDone: return "markDone"
        case .sched: return "sched"
        case .background: return "background"
        case .globals: return "globals"
        case .types: return "types"
        case .specials: return "specials"
        case .finq: return "finq"
        case .pools: return "pools"
        case .poolLocal: return "poolLocal"
        case .mcentral: return "mcentral"
        case .stackpool: return "stackpool"
        case .mheap: return "mheap"
        case .work: return "work"
        case .stats: return "stats"
        case .prof: return "prof"
        case .hooks: return "hooks"
        case .limiter: return "limiter"
        }
    }
}

extension Heap {
    /// Go's runtime.SetMutexProfileFraction for runtime locks: on average 1 in `rate`
    /// lock waits is recorded with its stack; 0 turns recording off; a negative rate only
    /// reads. Any rate is valid, as in Go: up to Int.max, where the profile's scaled
    /// figures (`mutexProfileData`) saturate. Returns the previous rate. Process-wide.
    @discardableResult
    public static func setMutexProfileFraction(_ rate: Int) -> Int {
        let w = LockWaits.shared.rateWord
        let old = Int(tc_load_relaxed(w))
        if rate >= 0 { tc_store_release(w, UInt(rate)) }
        return old
    }

    /// The sampled lock waits so far (raw counts; scale by the rate for estimates).
    public static func mutexProfile() -> [MutexProfileRecord] { LockWaits.shared.profile() }
}
