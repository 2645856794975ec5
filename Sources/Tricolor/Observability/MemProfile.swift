import CTricolor
import Glibc

// The heap profile (Go's mprof.go, heap half).
//
// Sampling. Go samples an allocation when the bytes allocated since the last sample
// cross an exponentially distributed threshold with mean MemProfileRate. Tricolor does
// the same per mutator cache slot (a span class's, or a type's own), so the inlined fast
// path pays nothing: when the allocation
// slow path loads a window of free slots into a cached span's allocCache, it keeps only
// as many free slots as there are whole objects before the next sample point and parks
// the rest in `heldCache`. The fast path runs dry exactly at the sampled object and
// calls the slow path, which samples it and re-arms. Independent exponential countdowns
// per slot add up to the same Poisson process over bytes that Go's single countdown
// gives, so each object of size s is still sampled with probability 1 − exp(−s/rate),
// the figure pprof's un-sampling divides by. Tiny and large allocations always take the
// slow path and use one byte countdown per mutator, exactly as Go's mcache.nextSample.
//
// Records. One bucket per (call stack, object size), with Go's memRecord: `active` is
// what a profile shows; `future[3]` is a ring indexed by the profile cycle, which
// advances at each mark termination. Allocations land two cycles ahead, frees (found by
// the sweeper) one cycle ahead, and each mark termination publishes one slot, so the
// published profile is the heap as of the last completed collection.
//
// Specials. A sampled object is remembered by a profile special (Go's specialprofile):
// a record of kind `.profile` in the heap's specials table (Runtime/Specials.swift),
// holding its bucket. The sweeper finds the records of dead sampled objects there and
// hands their buckets to `recordFrees` (Go's freeSpecial → mProf_Free); an object kept
// for its finalizer keeps its record, so the profile counts it in use, as Go does.
// Lock order: the profiler's lock before the specials lock, never the other way (the
// sweeper collects the frees under the specials lock and records them after).

/// Go's memRecordCycle.
struct MemRecordCycle: Sendable, Equatable {
    var allocs: Int = 0
    var frees: Int = 0
    var allocBytes: Int = 0
    var freeBytes: Int = 0

    mutating func add(_ o: MemRecordCycle) {
        allocs += o.allocs; frees += o.frees; allocBytes += o.allocBytes; freeBytes += o.freeBytes
    }
}

/// One row of the heap profile, as Go's runtime.MemProfileRecord: what was sampled at one
/// call stack for one object size (raw sample counts, not yet scaled by the rate).
public struct MemProfileRecord: Sendable, Equatable {
    /// Return addresses, innermost first.
    public var stack: [UInt]
    /// Object size in bytes (slot size for small objects, span bytes for large ones).
    public var size: Int
    /// Sampled objects allocated at this stack and size (raw samples: `heapProfile()` scales
    /// them by the sampling rate as Go does).
    public var allocObjects: Int
    /// Bytes of those sampled allocations.
    public var allocBytes: Int
    /// Sampled objects freed again, as of the last completed collection.
    public var freeObjects: Int
    /// Bytes of those freed samples.
    public var freeBytes: Int
    /// Sampled objects still live at the last completed collection.
    public var inUseObjects: Int { allocObjects - freeObjects }
    /// Bytes of the sampled objects still live at the last completed collection.
    public var inUseBytes: Int { allocBytes - freeBytes }
}

struct MemBucketKey: Hashable {
    var stack: [UInt]
    var size: Int
}

struct MemBucket {
    var key: MemBucketKey
    var active = MemRecordCycle()
    var future = [MemRecordCycle](repeating: MemRecordCycle(), count: 3)
}

/// The heap profile's buckets and cycle (all under `lock`).
final class MemProfiler: @unchecked Sendable {
    let lock = RuntimeLock(rank: .prof)
    var buckets: [MemBucket] = []
    var index: [MemBucketKey: Int] = [:]
    var cycle = 0
    var flushed = false

    deinit { lock.destroy() }

    /// A sampled allocation (Go's mProf_Malloc): returns its bucket, which the caller
    /// records in a profile special.
    func recordMalloc(stack: [UInt], size: Int) -> Int {
        lock.withLock {
            let key = MemBucketKey(stack: stack, size: size)
            let b: Int
            if let i = index[key] { b = i } else {
                b = buckets.count
                buckets.append(MemBucket(key: key))
                index[key] = b
            }
            buckets[b].future[(cycle + 2) % 3].allocs += 1
            buckets[b].future[(cycle + 2) % 3].allocBytes += size
            return b
        }
    }

    /// The sweeper found sampled objects dead (Go's mProf_Free, once per profile
    /// special freed): `elemSize` is their span's object size.
    func recordFrees(_ dead: [Int], elemSize: Int) {
        lock.withLock {
            for b in dead {
                buckets[b].future[(cycle + 1) % 3].frees += 1
                buckets[b].future[(cycle + 1) % 3].freeBytes += buckets[b].key.size == 0 ? elemSize : buckets[b].key.size
            }
        }
    }

    /// Mark termination, world stopped (Go's mProf_NextCycle).
    func nextCycle() {
        lock.withLock {
            cycle += 1
            flushed = false
        }
    }

    /// After mark termination (Go's mProf_Flush): publish cycle C.
    func flush() {
        lock.withLock {
            if flushed { return }
            flushed = true
            fold(cycle % 3)
        }
    }

    /// After a forced collection's sweep (Go's mProf_PostSweep): publish the frees of
    /// that sweep too.
    func postSweep() {
        lock.withLock { fold((cycle + 1) % 3) }
    }

    private func fold(_ slot: Int) {
        for i in buckets.indices {
            buckets[i].active.add(buckets[i].future[slot])
            buckets[i].future[slot] = MemRecordCycle()
        }
    }

    /// Go's runtime.MemProfile: the published records (all of them when `inuseZero`, else
    /// those with objects in use). If nothing was ever published (no collection yet),
    /// every pending cycle is folded in first so a program without GC still has data.
    func records(inuseZero: Bool) -> [MemProfileRecord] {
        lock.withLock {
            if buckets.allSatisfy({ $0.active.allocs == 0 && $0.active.frees == 0 }) {
                for s in 0..<3 { fold(s) }
            }
            var out: [MemProfileRecord] = []
            for b in buckets where inuseZero || b.active.allocBytes != b.active.freeBytes {
                out.append(MemProfileRecord(stack: b.key.stack, size: b.key.size,
                                            allocObjects: b.active.allocs, allocBytes: b.active.allocBytes,
                                            freeObjects: b.active.frees, freeBytes: b.active.freeBytes))
            }
            return out
        }
    }
}

/// Go's fastexprand: an exponentially distributed number of bytes with the given mean,
/// from a per-mutator xorshift generator.
@inline(__always)
func nextExponential(_ state: inout UInt64, mean: Int) -> Int {
    state ^= state << 13; state ^= state >> 7; state ^= state << 17
    // u in (0, 1]
    let u = (Double(state >> 11) + 1) * 0x1p-53
    let v = -log(u) * Double(mean)
    return v >= Double(Int.max / 2) ? Int.max / 2 : Int(v)
}

/// Objects before the next sample in a stream of `elemSize`-byte objects.
@inline(__always)
func sampleDistance(_ c: UnsafeMutablePointer<MCache>, elemSize: UInt) -> Int {
    let rate = c.pointee.profRate
    if rate == 1 { return 0 }
    return nextExponential(&c.pointee.rngState, mean: rate) / Int(elemSize)
}

/// Limit the cached span's current window to the objects before its cache slot's next
/// sample point (see the top of this file; `spc` is the slot). Charges the kept slots to
/// the countdown.
/// (Free functions, not Heap methods: the allocation slow path must not retain the heap.)
@inline(__always)
func armSample(_ c: UnsafeMutablePointer<MCache>, _ s: UnsafeMutablePointer<MSpan>, _ spc: Int) {
    let window = s.pointee.allocCache
    let n = window.nonzeroBitCount
    let left = c.pointee.toSample[spc]
    if n <= left {
        c.pointee.toSample[spc] = left - n
        return
    }
    // Keep the lowest `left` free slots.
    var keep = window
    var drop = n - left
    var held: UInt64 = 0
    while drop > 0 {
        let top = UInt64(1) << UInt64(63 - keep.leadingZeroBitCount)
        keep &= ~top
        held |= top
        drop -= 1
    }
    s.pointee.allocCache = keep
    s.pointee.heldCache = held
    c.pointee.toSample[spc] = 0
}

/// Undo `armSample` for a span: refund charged slots not used, give back held slots.
@inline(__always)
func disarmSample(_ c: UnsafeMutablePointer<MCache>, _ s: UnsafeMutablePointer<MSpan>, _ spc: Int) {
    c.pointee.toSample[spc] += s.pointee.allocCache.nonzeroBitCount
    s.pointee.allocCache |= s.pointee.heldCache
    s.pointee.heldCache = 0
}

extension Heap {
    /// Go's runtime.MemProfileRate for this heap: on average one sample per this many
    /// bytes allocated; 1 samples every allocation, 0 turns the heap profile off.
    public var memProfileRate: Int { configuration.memProfileRate }

    /// The heap profile's records as of the last completed collection (Go's
    /// runtime.MemProfile). Raw sample counts; see `heapProfile()` for scaled values.
    public func memProfile(inuseZero: Bool = false) -> [MemProfileRecord] {
        memProfiler.records(inuseZero: inuseZero)
    }

    /// Fresh sampling state for a mutator being attached.
    func initSampling(_ st: UnsafeMutablePointer<MutatorState>) {
        var seed = configuration.memProfileSeed ^ (UInt64(st.pointee.id) &* 0x9E3779B97F4A7C15)
        if seed == 0 { seed = 1 }
        let c = st.pointee.mcache
        c.pointee.rngState = seed
        let rate = configuration.memProfileRate
        c.pointee.profRate = rate
        c.pointee.nextSampleBytes = rate == 0 ? Int.max / 2 : nextExponential(&c.pointee.rngState, mean: rate)
        for i in 0..<SpanClass.count {
            let size = SizeClassTable.classToSize[i >> 1]
            c.pointee.toSample[i] = rate == 0 || size == 0 ? Int.max / 2 : sampleDistance(c, elemSize: UInt(size))
        }
        // Type slots start counting at their first span (`MCache.refill`).
        for i in SpanClass.count..<MCache.slotCount { c.pointee.toSample[i] = MCache.sampleUnset }
    }

    /// Record a sampled allocation: capture the stack here (never symbolized here).
    @inline(never)
    func profileAlloc(_ addr: UInt, size: Int, span: UnsafeMutablePointer<MSpan>) {
        var buf = (UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0),
                   UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0),
                   UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0),
                   UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0), UInt(0))
        let stack = withUnsafeMutableBytes(of: &buf) { raw -> [UInt] in
            let p = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
            let n = captureStack(skip: 1, into: p, max: 32)
            return Array(UnsafeBufferPointer(start: p, count: n))
        }
        let bucket = memProfiler.recordMalloc(stack: stack, size: size)
        specials.lock.withLock {
            // A fresh object has no records (the sweep removed its slot's last ones), so
            // this never fails. `addr` may be inside a tiny block (Go keys by offset too).
            let added = insertSpecialLocked(Special(addr: addr, kind: .profile, arg: UInt(bucket)), span: span)
            runtimeCheck(added, "heap profile: object \(Ref(address: addr)) already has a profile record")
        }
    }
}
