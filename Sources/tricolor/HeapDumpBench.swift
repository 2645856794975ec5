// `tricolor bench heapdump`: the costs of the debugger's half (BENCHMARKS.md, "Seeing
// inside"): writing a dump of a large live heap (pause, MB/s), and `Heap.inspect`
// per call (one stop of the world each) and per address in a batch. The analyzer's
// time and peak memory are measured on the dump this writes, in a process of its own
// (`/usr/bin/time -v tricolor heapdump top FILE`), so the writer's heap is not counted.

import Foundation
import Glibc
import Tricolor

enum HeapDumpBench {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Builds `objects` live 112-byte nodes (two pointer words: a random graph under one
    /// root array), writes a dump to `path` `runs` times, and times inspect.
    static func run(objects: Int, path: String, runs: Int) throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, reservedAddressSpace: 64 << 30, memProfileRate: 512 * 1024))
        let node = try heap.register(TypeLayout(name: "bench.Node", size: 112, pointerWords: [0, 1]))
        let table = try heap.register(TypeLayout(name: "bench.Root", size: 8, pointerWords: [0]))
        let global = heap.makeGlobal()
        var rng = UInt64(0x9E3779B97F4A7C15)
        func next() -> UInt64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
        let t0 = now()
        var sample: [UInt] = []
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                let roots = 1024
                f[0] = m.allocateArray(table, count: roots)
                m.store(global, f[0])
                var prev = Ref(address: 0)
                for i in 0..<objects {
                    f[1] = m.allocate(node)
                    // A chain through word 0 (everything stays reachable), a random back
                    // edge through word 1, and every 10^4th node hung off the root array.
                    m.store(f[1], 0, prev)
                    if i > 0 && next() % 2 == 0 { m.store(f[1], 1, prev) }
                    if i % 10_000 == 0 { m.store(f[0], Int(next() % UInt64(roots)), f[1]) }
                    prev = f[1]
                    if i % (objects / 1000 + 1) == 0 { sample.append(f[1].address) }
                }
                m.store(f[0], 0, prev)
            }
        }
        let build = now() - t0
        let ms = heap.memStats()
        print("heap: \(objects) objects, HeapAlloc \(ms.heapAlloc >> 20) MiB, built in \(String(format: "%.2f", build)) s")
        func maxRSS() -> Int { var u = rusage(); getrusage(RUSAGE_SELF.rawValue, &u); return u.ru_maxrss / 1024 }
        let rssBefore = maxRSS()
        var pauses: [Double] = [], rates: [Double] = [], walls: [Double] = []
        var bytes: UInt64 = 0
        for _ in 0..<runs {
            let w0 = now()
            let s = try heap.writeHeapDump(to: path)
            let wall = now() - w0
            bytes = s.fileBytes
            pauses.append(Double(s.pauseNs) / 1e6)
            walls.append(wall)
            rates.append(Double(ms.heapAlloc) / 1e6 / (Double(s.pauseNs) / 1e9))
        }
        func median(_ a: [Double]) -> Double { let s = a.sorted(); return s[s.count / 2] }
        print(String(format: "dump: %d bytes (%.1f bytes/object); pause median %.1f ms (min %.1f, max %.1f); wall %.1f ms (with fsync and rename); %.0f MB of heap/s, %.0f MB of file/s",
                     bytes, Double(bytes) / Double(objects), median(pauses), pauses.min()!, pauses.max()!, median(walls) * 1000,
                     median(rates), Double(bytes) / 1e6 / (median(pauses) / 1000)))
        print("peak RSS: \(rssBefore) MiB before the dumps, \(maxRSS()) MiB after (the dump streams: no copy of the heap)")
        // inspect: one call = one stop of the world; a batch shares one stop.
        var perCall: [Double] = []
        for _ in 0..<7 {
            let n = 2000
            let i0 = now()
            for k in 0..<n { _ = heap.inspect(sample[k % sample.count] + 8) }
            perCall.append((now() - i0) / Double(n) * 1e6)
        }
        var perAddr: [Double] = []
        let batch = (0..<100_000).map { sample[$0 % sample.count] + UInt($0 % 112) }
        for _ in 0..<7 {
            let i0 = now()
            _ = heap.inspect(batch)
            perAddr.append((now() - i0) / Double(batch.count) * 1e9)
        }
        print(String(format: "inspect: %.2f µs per call (median of 7 × 2000 calls, a stop of the world each); %.0f ns per address in a batch of 100000",
                     median(perCall), median(perAddr)))
    }
}
