import Tricolor
import TricolorHeapDump
import CTricolor
import Glibc

// Heap and mutex profiles as pprof files (Go's runtime/pprof writeHeapProto and
// printCountCycleProfile), symbolized here — never on the allocation path.

extension Heap {
    /// Function names for a stack from an `AllocationEvent` or a profile record.
    public func symbolize(stack: [UInt]) -> [ProfileFrame] {
        let sym = Symbolizer.shared
        return stack.flatMap { sym.frames(for: $0 &- 1) }
    }

    /// The heap profile as a gzipped pprof protobuf, the file `go tool pprof` reads:
    /// sample types alloc_objects/count, alloc_space/bytes, inuse_objects/count,
    /// inuse_space/bytes; period space/bytes = MemProfileRate; values un-sampled with
    /// Go's formula. In-use figures are as of the last completed collection.
    public func heapProfile() -> [UInt8] {
        gzipCompress(heapProfileProto())
    }

    /// The same, uncompressed.
    public func heapProfileProto() -> [UInt8] {
        let rate = configuration.memProfileRate
        let sym = Symbolizer.shared
        var b = PprofBuilder(
            sampleTypes: [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")],
            periodType: ("space", "bytes"), period: Int64(rate),
            symbolize: { pc in trimFrames(sym.frames(for: pc), isRuntimeFrame) })
        b.timeNanos = Int64(tc_walltime_ns())
        for m in sym.mappings { b.addMapping(m) }
        for r in memProfile(inuseZero: true) {
            let (ao, ab) = scaleHeapSample(count: r.allocObjects, bytes: r.allocBytes, rate: rate)
            let (io, ib) = scaleHeapSample(count: r.inUseObjects, bytes: r.inUseBytes, rate: rate)
            let stack = trimStack(r.stack, sym: sym, isRuntimeFrame)
            var labels: [(key: String, value: Int64, unit: String?)] = []
            if r.allocObjects > 0 { labels.append(("bytes", Int64(r.allocBytes / r.allocObjects), nil)) }
            b.addSample(stack: stack, values: [ao, ab, io, ib], numLabels: labels)
        }
        return b.encode()
    }

    /// The runtime-lock contention profile as a gzipped pprof protobuf (Go's mutex
    /// profile shape: contentions/count, delay/nanoseconds, both multiplied by the rate,
    /// saturating at Int64.max: any rate `setMutexProfileFraction` took is valid).
    public static func mutexProfileData() -> [UInt8] {
        let sym = Symbolizer.shared
        let rate = Int64(max(1, setMutexProfileFraction(-1)))
        var b = PprofBuilder(
            sampleTypes: [("contentions", "count"), ("delay", "nanoseconds")],
            periodType: ("contentions", "count"), period: 1,
            symbolize: { pc in trimFrames(sym.frames(for: pc), isLockFrame) })
        b.timeNanos = Int64(tc_walltime_ns())
        for m in sym.mappings { b.addMapping(m) }
        for r in mutexProfile() {
            b.addSample(stack: trimStack(r.stack, sym: sym, isLockFrame),
                        values: [scaledBySamplingRate(r.count, rate), scaledBySamplingRate(r.delayNs, rate)])
        }
        return gzipCompress(b.encode())
    }
}

/// A sampled count or delay (never negative) times the sampling rate, or Int64.max when
/// the product does not fit (a huge rate): an estimate that large says "off the scale",
/// a trap says nothing.
func scaledBySamplingRate(_ value: Int, _ rate: Int64) -> Int64 {
    let (product, overflow) = Int64(value).multipliedReportingOverflow(by: rate)
    return overflow ? .max : product
}

/// Go's scaleHeapSample: undo sampling. An object of average size `avg` was sampled
/// with probability 1 − exp(−avg/rate).
func scaleHeapSample(count: Int, bytes: Int, rate: Int) -> (Int64, Int64) {
    if count == 0 || bytes == 0 { return (0, 0) }
    if rate <= 1 { return (Int64(count), Int64(bytes)) }
    let avg = Double(bytes) / Double(count)
    let scale = 1 / (1 - exp(-avg / Double(rate)))
    return (Int64(Double(count) * scale), Int64(Double(bytes) * scale))
}

/// Frames of the runtime itself and the standard-library helpers it calls
/// (TricolorHeapDump's `isRuntimeFrameName`: the heap dump names sites by the same rule).
func isRuntimeFrame(_ f: ProfileFrame) -> Bool { isRuntimeFrameName(f.function) }

/// Frames of the lock-wait recording machinery (and standard-library helpers under it).
func isLockFrame(_ f: ProfileFrame) -> Bool {
    let n = undecoratedFrameName(Substring(f.function))
    return n.hasPrefix("Tricolor.LockWaits.") || n.hasPrefix("Tricolor.RuntimeLock.") || n.hasPrefix("tc_") || isStdlibHelperFrame(n)
}

/// Drop the leading (innermost) frames `drop` matches; if that leaves nothing, keep all.
func trimFrames(_ frames: [ProfileFrame], _ drop: (ProfileFrame) -> Bool) -> [ProfileFrame] {
    guard let i = frames.firstIndex(where: { !drop($0) }) else { return frames }
    return Array(frames[i...])
}

/// Return addresses → call-site PCs, minus leading PCs all of whose frames `drop`
/// matches (keeping the whole stack if nothing would be left, as Go does).
func trimStack(_ stack: [UInt], sym: SharedSymbolizer, _ drop: (ProfileFrame) -> Bool) -> [UInt] {
    let pcs = stack.map { $0 &- 1 }
    guard let i = pcs.firstIndex(where: { pc in
        let f = sym.frames(for: pc)
        return f.isEmpty || !f.allSatisfy(drop)
    }) else { return pcs }
    return Array(pcs[i...])
}
