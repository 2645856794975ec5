import Glibc
import Tricolor

/// Run `body(i)` for i in 0..<count on `count` new threads and wait for all of them.
/// The caller, if attached as a mutator, should wait inside `Mutator.blocking`.
public func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Box { let f: () -> Void; init(_ f: @escaping () -> Void) { self.f = f } }
    var threads: [pthread_t] = []
    for i in 0..<count {
        let box = Unmanaged.passRetained(Box { body(i) }).toOpaque()
        var t = pthread_t()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 64 << 20)
        let rc = pthread_create(&t, &attr, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().f()
            return nil
        }, box)
        pthread_attr_destroy(&attr)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
}

/// Monotonic clock in seconds.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Nearest-rank quantile, as `GCStats.stopTheWorldPauseQuantile`.
func quantile(_ xs: [UInt64], _ q: Double) -> UInt64 {
    if xs.isEmpty { return 0 }
    let sorted = xs.sorted()
    return sorted[min(sorted.count - 1, max(0, Int((q * Double(sorted.count - 1)).rounded())))]
}

/// The summary line every workload prints last: `# key=value ...`.
public func summaryLine(heap: Heap, wallSeconds: Double, extra: [(String, String)] = []) -> String {
    let stats = heap.gcStats()
    let mem = heap.memStats()
    func us(_ ns: UInt64) -> String { String(format2: Double(ns) / 1000) }
    var pairs: [(String, String)] = [
        ("wall_s", String(format3: wallSeconds)),
        ("numgc", String(stats.numGC)),
        ("pause_total_us", us(stats.pauseTotal)),
        ("pause_p50_us", us(stats.stopTheWorldPauseQuantile(0.5))),
        ("pause_p99_us", us(stats.stopTheWorldPauseQuantile(0.99))),
        ("pause_max_us", us(stats.allPauses.max() ?? 0)),
        ("heap_sys_mb", String(format2: Double(mem.heapSys) / 1048576)),
        ("total_alloc_mb", String(format2: Double(mem.totalAlloc) / 1048576)),
        ("stop_rescues", String(stats.stopRescues)),
        // Each pause split: waiting for the mutators to stop, and the work with the world
        // stopped (per pause, then the quantile).
        ("pause_stopping_p50_us", us(quantile(stats.allPausesStopping, 0.5))),
        ("pause_stopping_p99_us", us(quantile(stats.allPausesStopping, 0.99))),
        ("pause_work_p99_us", us(quantile(zip(stats.allPauses, stats.allPausesStopping).map { $0 - min($0, $1) }, 0.99))),
        // Conservative scanning of native stacks: bytes read per cycle (mean).
        ("native_scan_bytes_per_gc", String(stats.numGC == 0 ? 0 : stats.nativeStackScanBytes / UInt64(stats.numGC))),
    ]
    pairs += extra
    return "# " + pairs.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
}

extension String {
    public init(format2 v: Double) {
        let n = Int((v * 100).rounded())
        let frac = String(abs(n) % 100)
        self = (n < 0 ? "-" : "") + String(abs(n) / 100) + "." + String(repeating: "0", count: 2 - frac.count) + frac
    }
    public init(format3 v: Double) {
        let n = Int((v * 1000).rounded())
        let frac = String(abs(n) % 1000)
        self = (n < 0 ? "-" : "") + String(abs(n) / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}
