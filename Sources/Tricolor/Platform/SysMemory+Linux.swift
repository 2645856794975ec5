import CTricolor
import Glibc
import Synchronization

// The system calls under SysMemory, one wrapper per call, each returning the errno of a
// failure (swift-system style: `Result<…, Errno>`), counted per operation, and with a
// test seam (`SysFaultInjection`) that makes a chosen call fail. Syscalls only: the
// meaning of each call (which state change it makes) is in SysMemory.swift.

/// An errno value from a failed OS call.
struct Errno: Error, Equatable, CustomStringConvertible {
    let rawValue: Int32
    init(_ rawValue: Int32) { self.rawValue = rawValue }
    static let outOfMemory = Errno(ENOMEM)
    static let invalidArgument = Errno(EINVAL)
    var description: String { "errno \(rawValue)" }
}

/// The OS operations the runtime makes, one per state change (see SysMemory). The unit
/// of the call counters and of fault injection.
enum SysOp: Int, CaseIterable, CustomStringConvertible {
    case reserve    // mmap PROT_NONE: None → Reserved
    case map        // mprotect READ|WRITE: Reserved → Prepared (charged against the commit limit)
    case fault      // mmap MAP_FIXED PROT_NONE: Prepared → Reserved (Go's sysFault)
    case hugePage   // madvise MADV_HUGEPAGE: Prepared → Ready
    case populate   // madvise MADV_POPULATE_WRITE: fault a Ready range in
    case unused     // madvise MADV_DONTNEED: Ready → Prepared, pages back to the OS
    case free       // munmap: any → None
    case metadata   // mmap READ|WRITE, NORESERVE: runtime metadata (Go's sysAlloc)

    var description: String {
        switch self {
        case .reserve: return "reserve (mmap PROT_NONE)"
        case .map: return "map (mprotect)"
        case .fault: return "fault (mmap MAP_FIXED PROT_NONE)"
        case .hugePage: return "hugePage (madvise MADV_HUGEPAGE)"
        case .populate: return "populate (madvise MADV_POPULATE_WRITE)"
        case .unused: return "unused (madvise MADV_DONTNEED)"
        case .free: return "free (munmap)"
        case .metadata: return "metadata (mmap)"
        }
    }
}

/// Calls, failures and bytes of successful calls per `SysOp`, process-wide (every heap's
/// calls together). For tests and debugging: "what the OS actually accepted".
/// Written with relaxed atomic adds by whichever thread makes the call; read racily.
enum SysCounters {
    struct Snapshot: Equatable {
        var calls = [Int](repeating: 0, count: SysOp.allCases.count)
        var failures = [Int](repeating: 0, count: SysOp.allCases.count)
        var bytes = [Int](repeating: 0, count: SysOp.allCases.count)
        func calls(_ op: SysOp) -> Int { calls[op.rawValue] }
        func failures(_ op: SysOp) -> Int { failures[op.rawValue] }
        /// Bytes of the successful calls of `op`.
        func bytes(_ op: SysOp) -> Int { bytes[op.rawValue] }
        /// `self - earlier`, field by field.
        func since(_ earlier: Snapshot) -> Snapshot {
            var d = Snapshot()
            for i in 0..<calls.count {
                d.calls[i] = calls[i] - earlier.calls[i]
                d.failures[i] = failures[i] - earlier.failures[i]
                d.bytes[i] = bytes[i] - earlier.bytes[i]
            }
            return d
        }
    }

    /// Three words per op: calls, failures, bytes. Allocated once, never freed.
    nonisolated(unsafe) static let words: UnsafeMutablePointer<UInt> = {
        let n = 3 * SysOp.allCases.count
        let p = UnsafeMutablePointer<UInt>.allocate(capacity: n)
        p.initialize(repeating: 0, count: n)
        return p
    }()

    @inline(__always)
    static func record(_ op: SysOp, bytes: Int, failed: Bool) {
        let w = words + 3 * op.rawValue
        _ = tc_fetch_add_relaxed(w, 1)
        if failed {
            _ = tc_fetch_add_relaxed(w + 1, 1)
        } else {
            _ = tc_fetch_add_relaxed(w + 2, UInt(bitPattern: bytes))
        }
    }

    static func snapshot() -> Snapshot {
        var s = Snapshot()
        for op in SysOp.allCases {
            let w = words + 3 * op.rawValue
            s.calls[op.rawValue] = Int(bitPattern: tc_load_relaxed(w))
            s.failures[op.rawValue] = Int(bitPattern: tc_load_relaxed(w + 1))
            s.bytes[op.rawValue] = Int(bitPattern: tc_load_relaxed(w + 2))
        }
        return s
    }
}

/// Test seam: makes chosen OS calls fail with a chosen errno, without making the call
/// (the fake OS layer of STYLE habit 19). Process-wide: tests that arm it run their
/// scenario in a forked child, so no other heap's calls consume the failures.
///
/// Off, it costs each OS call one relaxed load and a not-taken branch; nothing on any
/// allocation fast path reaches an OS call.
enum SysFaultInjection {
    struct Rule {
        var op: SysOp
        var errno: Int32
        var skip: Int       // calls of `op` to let through first
        var times: Int      // failures to inject after that (Int.max: every call)
    }

    /// Number of rules armed; 0 keeps every OS call on its fast path.
    static let armed = Atomic<Int>(0)
    /// Behind a pthread mutex so that the ThreadSanitizer run sees the lock (`PthreadLocked`).
    static let rules = PthreadLocked<[Rule]>([])

    /// Make the call of `op` numbered `after + 1` from now fail with `errno`, and the
    /// `times - 1` calls of `op` after it too.
    static func inject(_ op: SysOp, errno: Int32, after skip: Int = 0, times: Int = 1) {
        runtimeCheck(skip >= 0 && times >= 1)
        rules.withLock { $0.append(Rule(op: op, errno: errno, skip: skip, times: times)) }
        armed.add(1, ordering: .releasing)
    }

    /// Remove every rule (those not yet used up).
    static func reset() {
        rules.withLock { r in
            armed.subtract(r.count, ordering: .releasing)
            r.removeAll()
        }
    }

    /// Rules not yet used up.
    static var pending: Int { rules.withLock { $0.count } }

    /// The errno to fail this call of `op` with, or nil to make the call.
    @inline(__always)
    static func check(_ op: SysOp) -> Errno? {
        if _fastPath(armed.load(ordering: .relaxed) == 0) { return nil }
        return checkSlow(op)
    }

    @inline(never)
    static func checkSlow(_ op: SysOp) -> Errno? {
        rules.withLock { r in
            // The first rule for `op` decides; later rules for it wait their turn.
            guard let i = r.firstIndex(where: { $0.op == op }) else { return nil }
            if r[i].skip > 0 {
                r[i].skip -= 1
                return nil
            }
            let e = Errno(r[i].errno)
            if r[i].times != Int.max { r[i].times -= 1 }
            if r[i].times == 0 {
                r.remove(at: i)
                armed.subtract(1, ordering: .releasing)
            }
            return e
        }
    }
}

/// The system calls, errno-checked. `op` names the state change for counting and
/// fault injection. None retries on EINTR: none of these calls sleeps interruptibly,
/// except MADV_POPULATE_WRITE, which returns EINTR only when a fatal signal is pending.
enum SysCall {
    static func mmap(_ addr: UnsafeMutableRawPointer?, _ n: Int, prot: Int32, flags: Int32,
                     op: SysOp) -> Result<UnsafeMutableRawPointer, Errno> {
        if let e = SysFaultInjection.check(op) { SysCounters.record(op, bytes: n, failed: true); return .failure(e) }
        let p = Glibc.mmap(addr, n, prot, flags, -1, 0)
        guard let p, p != UnsafeMutableRawPointer(bitPattern: -1) else {   // MAP_FAILED
            let e = Errno(errno)
            SysCounters.record(op, bytes: n, failed: true)
            return .failure(e)
        }
        SysCounters.record(op, bytes: n, failed: false)
        return .success(p)
    }

    static func mprotect(_ p: UnsafeMutableRawPointer, _ n: Int, prot: Int32, op: SysOp) -> Result<Void, Errno> {
        if let e = SysFaultInjection.check(op) { SysCounters.record(op, bytes: n, failed: true); return .failure(e) }
        return done(Glibc.mprotect(p, n, prot), op, n)
    }

    static func madvise(_ p: UnsafeMutableRawPointer, _ n: Int, _ advice: Int32, op: SysOp) -> Result<Void, Errno> {
        if let e = SysFaultInjection.check(op) { SysCounters.record(op, bytes: n, failed: true); return .failure(e) }
        return done(Glibc.madvise(p, n, advice), op, n)
    }

    static func munmap(_ p: UnsafeMutableRawPointer, _ n: Int, op: SysOp) -> Result<Void, Errno> {
        if let e = SysFaultInjection.check(op) { SysCounters.record(op, bytes: n, failed: true); return .failure(e) }
        return done(Glibc.munmap(p, n), op, n)
    }

    @inline(__always)
    private static func done(_ rc: Int32, _ op: SysOp, _ n: Int) -> Result<Void, Errno> {
        if rc == 0 {
            SysCounters.record(op, bytes: n, failed: false)
            return .success(())
        }
        let e = Errno(errno)
        SysCounters.record(op, bytes: n, failed: true)
        return .failure(e)
    }
}
