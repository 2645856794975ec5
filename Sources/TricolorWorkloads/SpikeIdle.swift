import CTricolor
import Glibc
import Tricolor

/// RSS over time for a spike-then-idle workload (`tricolor bench spike`; Go's side is
/// Benchmarks/go/spike): build about `mib` MiB of live 64-byte nodes, drop them, run one
/// collection (as `runtime.GC()`), then sit idle for `seconds`, sampling the resident set
/// (/proc/self/statm) every 100 ms. Reports the peak, the RSS right after the collection,
/// and the RSS 1, 2, 5 and 10 s into the idle period; the scavenger (Go's bgscavenge) is
/// what brings it down.
public enum SpikeIdle {
    public static func rssBytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = read(fd, &buf, 127)
        guard n > 0 else { return 0 }
        let fields = String(decoding: buf[0..<n], as: UTF8.self).split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    public static func run(heap: Heap, mib: Int, seconds: Int) throws -> [String] {
        let node = try heap.register(TypeLayout(name: "spike.Node", size: 64, pointerWords: [0]))
        let ptrs = try heap.register(TypeLayout(name: "spike.Ptrs", size: 8, pointerWords: [0]))
        let start = rssBytes()
        var peak = start
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let n = (mib << 20) / 72
                f[0] = m.allocateArray(ptrs, count: n)
                for i in 0..<n {
                    let r = m.allocate(node)
                    m.storeWord(r, 1, i)
                    m.store(f[0], i, r)
                    if i % 100_000 == 0 { peak = max(peak, rssBytes()) }
                }
                peak = max(peak, rssBytes())
                f[0] = .null
            }
            heap.collect()
        }
        let afterGC = rssBytes()
        var samples: [(Double, Int)] = []
        let t0 = tc_nanotime()
        while true {
            let t = Double(tc_nanotime() - t0) / 1e9
            samples.append((t, rssBytes()))
            if t >= Double(seconds) { break }
            usleep(100_000)
        }
        func at(_ s: Double) -> Int { samples.first { $0.0 >= s }?.1 ?? samples.last!.1 }
        let st = heap.memStats()
        return ["spike mib=\(mib) start_rss_mib=\(start >> 20) peak_rss_mib=\(peak >> 20) after_gc_rss_mib=\(afterGC >> 20) rss_1s_mib=\(at(1) >> 20) rss_2s_mib=\(at(2) >> 20) rss_5s_mib=\(at(5) >> 20) rss_\(seconds)s_mib=\(samples.last!.1 >> 20) heap_sys_mib=\(st.heapSys >> 20) heap_released_mib=\(st.heapReleased >> 20)"]
    }
}
