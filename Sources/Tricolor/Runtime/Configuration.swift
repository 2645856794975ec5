import Glibc

/// How a heap is set up. Read from the environment as Go reads it (`GOGC`, `GOMEMLIMIT`,
/// `GOMAXPROCS`, `GODEBUG`), then overridable in code. Invalid values are rejected with an
/// error that names them; too large a `gcPercent` or `gomaxprocs` is clamped instead
/// (`maxGCPercent`, `maxGomaxprocs`).
public struct Configuration: Sendable, Equatable {
    /// GOGC: the heap may grow to live × (1 + gcPercent/100) before the next cycle.
    /// nil turns the collector off (`GOGC=off`). Normalized on assignment, as Go's
    /// SetGCPercent does: a negative value becomes nil (off), and a value above
    /// `Configuration.maxGCPercent` becomes that maximum (see there why).
    public var gcPercent: Int? {
        get { _gcPercent }
        set { _gcPercent = newValue.flatMap { $0 < 0 ? nil : min($0, Configuration.maxGCPercent) } }
    }
    private var _gcPercent: Int?
    /// Checked mode (`GODEBUG=tricolorcheck=1`): every allocation, load and store is
    /// validated and misuse traps with a message. Slow; for debugging.
    public var checked: Bool
    /// `GODEBUG=gctrace=1`: one line per collection on stderr.
    public var gctrace: Bool
    /// `GODEBUG=scavtrace=1`: one line per cycle on stderr saying what the scavenger
    /// returned to the OS, in Go's format (`scav … KiB work, … KiB total, …% util`), and
    /// one marked "(forced)" after `Heap.freeOSMemory()`.
    public var scavtrace: Bool = false
    /// Fault fresh heap memory in on a background thread ahead of allocation (Allocator/
    /// HeapGrowth.swift). Off by default (`GODEBUG=tricolorbggrow=1` turns it on): growth
    /// is then done by the allocating thread, 8 KiB at a time, inside a blocking region,
    /// much as Go's goroutines take their first-touch faults. On two CPUs the grower
    /// competed with the mutator and the mark worker, and each 2 MiB piece it faulted in
    /// kept a mutator off its CPU for about half a millisecond: the growth benchmark's
    /// p99.99 was 540–640 µs with it and 66–109 µs without (Go 1.19: 66–150 µs), with
    /// binary-trees 21 unchanged. It may pay on a machine with idle CPUs. No background
    /// thread runs with `markWorkers: 0` either.
    public var backgroundHeapGrowth: Bool = false
    /// Ask for transparent huge pages (`MADV_HUGEPAGE`) on memory faulted in ahead of use
    /// for small-object spans (`GODEBUG=tricolorthp=1`). Off by default, as Go 1.19
    /// leaves it off where THP is in "madvise" mode: a huge-page fault is cheaper per
    /// byte, but with the kernel's default defrag setting for advised memory it compacts
    /// memory to find a huge page inside the fault, which took tens of milliseconds on a
    /// busy machine here, and cost more system time than it saved (BENCHMARKS.md, "Memory
    /// to and from the OS").
    public var transparentHugePages: Bool = false
    /// `GODEBUG=clobberfree=1`: freed objects are filled with 0xdeadbeef before reuse.
    public var clobberFree: Bool
    /// `GODEBUG=gccheckmark=1`: verify each mark phase with a second, stop-the-world mark.
    public var checkmark: Bool
    /// The runtime's own consistency checks, in two tiers (Go keeps the same split as
    /// compile-time `debug…` constants; ours are switches so that the stress tests and
    /// the fuzzer turn them on in release builds):
    ///
    /// - `internalChecks` (`GODEBUG=tricolorinternalchecks=1`): cheap invariants after
    ///   each mutation of an allocator structure: a span's bitmaps, window and counts
    ///   when it is swept or cached (`MSpan.checkInvariants`, O(span bitmap words)), the
    ///   page allocator's summaries on the path from each changed chunk to the root
    ///   (O(log chunks)). Costs a few percent of allocation-heavy run time.
    /// - `expensiveChecks` (`GODEBUG=tricolorexpensivechecks=1`): the whole heap's
    ///   invariants (`Heap.checkInvariants`: every page of every arena against its span,
    ///   the page allocator's whole summary tree, HeapInuse and HeapSys against the span
    ///   table, the pacing policies) once per cycle, inside pause #2. O(heap pages) per
    ///   cycle: pauses grow by milliseconds per GiB of heap.
    ///
    /// Both are off by default and on in the model-based stress tests.
    public var internalChecks: Bool = false
    /// The whole heap's invariants once per cycle (`GODEBUG=tricolorexpensivechecks=1`); see
    /// `internalChecks` for both tiers.
    public var expensiveChecks: Bool = false
    /// GOMEMLIMIT: a soft limit on the memory the runtime maps, in bytes; nil = none.
    public var memoryLimit: Int?
    /// Mark worker threads; nil = Go's rule (25% of GOMAXPROCS). 0 runs no background
    /// marking: cycles advance only through assists and `collect()` (for tests).
    public var markWorkers: Int?
    /// GOMAXPROCS for pacing and gctrace; nil = the number of online CPUs. A value above
    /// `Configuration.maxGomaxprocs` is clamped to it on assignment (see there why);
    /// a value below 1 is kept and rejected by `validate()` (and so by `Heap.init`).
    public var gomaxprocs: Int? {
        get { _gomaxprocs }
        set { _gomaxprocs = newValue.map { min($0, Configuration.maxGomaxprocs) } }
    }
    private var _gomaxprocs: Int?
    /// Address space reserved for the heap at creation (not memory: pages are committed
    /// as the heap grows). The heap can never exceed it. Default 256 GiB.
    public var reservedAddressSpace: Int
    /// Go's runtime.MemProfileRate (`GODEBUG=memprofilerate=N`): the heap profile samples
    /// on average one allocation per this many bytes; 1 samples every allocation, 0 turns
    /// the heap profile off. Default 512 KiB, as in Go.
    public var memProfileRate: Int
    /// Seed of the heap profile's sampling (mixed with each mutator's id), so a test can
    /// reproduce a sample exactly.
    public var memProfileSeed: UInt64
    /// Count every allocation by the level of the chain that served it, with latency
    /// histograms (`Heap.allocPathStats()`, `tricolor run … --alloc-path`). Sends every
    /// allocation through the outlined slow path; off by default.
    public var allocPathStats: Bool
    /// Scan each mutator's native stack and registers conservatively, once per cycle
    /// (Boehm GC's and cppgc's stack scanning): a `Ref` held in a Swift local, a
    /// parameter or a register is a root. On by default; `GODEBUG=tricolorconservative=0`
    /// turns it off for programs that keep every live `Ref` in frames, globals and
    /// handles (precise roots only). See Collector/ConservativeScan.swift.
    public var conservativeStackScan: Bool = true
    /// Halve a shadow stack that uses less than a quarter of itself when it is scanned
    /// (Go's shrinkstack). `GODEBUG=gcshrinkstackoff=1` turns it off, as in Go.
    public var shrinkStacks: Bool = true
    /// `GODEBUG=gcstress=N`: run a full collection at every N-th full safepoint of each
    /// mutator (its allocations and its `safepoint()` calls), as V8's `--gc-interval` and
    /// Go's GC-stress testing do, so that a `Ref` not kept in a root is freed at once and
    /// the next checked access to it traps. Sends every allocation through the outlined
    /// slow path. 0 (the default) is off; 1 collects at every allocation (very slow).
    public var gcStress: Int = 0
    /// `GODEBUG=tricolorquarantine=N`: in checked mode, a freed object's slot is poisoned
    /// and held for N completed cycles before it can be allocated again, so that a stale
    /// `Ref` to it traps naming its type, address and the cycle that freed it
    /// (Collector/Quarantine.swift). Default 3; 0 turns the quarantine off. No effect
    /// outside checked mode. Quarantined objects count as freed in MemStats; their
    /// slots stay in HeapInuse until released.
    public var quarantineCycles: Int = Quarantine.defaultCycles
    /// The stop-the-world watchdog: when a stop has waited this long for a mutator to
    /// reach a safepoint, it prints which mutator holds it up (thread name and id, time
    /// since its last safepoint, its stack) and keeps waiting; again each time the
    /// period passes. `GODEBUG=tricolorstwwatchdog=MS` sets it in milliseconds, 0 turns
    /// it off (nil). Default 5000 ms.
    public var stopTheWorldWatchdogMilliseconds: Int? = 5000

    /// A configuration with Go's defaults for every value not given: GOGC 100, no memory limit,
    /// mark workers and GOMAXPROCS from the machine, 256 GiB of address space, one heap profile
    /// sample per 512 KiB, and every debugging mode off. The environment is not read; use
    /// `fromEnvironment(_:)` for that.
    ///
    /// `gcPercent` and `gomaxprocs` are normalized as their setters do. Values are checked when
    /// a `Heap` is created with the configuration, which throws a `ConfigurationError` naming
    /// any value out of range.
    public init(gcPercent: Int? = 100, checked: Bool = false, gctrace: Bool = false,
                clobberFree: Bool = false, checkmark: Bool = false,
                memoryLimit: Int? = nil, markWorkers: Int? = nil, gomaxprocs: Int? = nil,
                reservedAddressSpace: Int = 256 << 30, memProfileRate: Int = 512 * 1024,
                memProfileSeed: UInt64 = 0x2545F4914F6CDD1D, allocPathStats: Bool = false) {
        self.memProfileRate = memProfileRate
        self.memProfileSeed = memProfileSeed
        self.allocPathStats = allocPathStats
        self.memoryLimit = memoryLimit
        self.markWorkers = markWorkers
        self.checked = checked
        self.gctrace = gctrace
        self.clobberFree = clobberFree
        self.checkmark = checkmark
        self.reservedAddressSpace = reservedAddressSpace
        self._gomaxprocs = nil
        self._gcPercent = nil
        self.gomaxprocs = gomaxprocs      // through the setters: normalized and clamped
        self.gcPercent = gcPercent
    }

    // MARK: limits

    /// The largest GOGC kept; larger settings (from `GOGC`, or assigned in code) are
    /// clamped to it. It is Go's own range: gcPercent is an int32 in Go, and Go 1.19's
    /// readGOGC parses with atoi32. (For a value past int32 Go 1.19 falls back to 100,
    /// which we do not copy: a huge GOGC means "collect as rarely as possible".)
    /// At this value the pacer's heap minimum is 4 MiB × 2147483647 / 100 ≈ 82 TiB, more
    /// than the largest reservation (64 TiB), so the percentage goal is never reached and
    /// GOGC is effectively off (GOMEMLIMIT still applies), while every product the pacer
    /// forms with it (4 MiB × GOGC, roots × GOGC) stays far inside 64 bits.
    public static let maxGCPercent = Int(Int32.max)

    /// The largest GOMAXPROCS kept; larger settings are clamped to it. Go 1.19's
    /// schedinit takes any positive int32 and has no cap: `_MaxGomaxprocs` (256 in Go
    /// 1.5–1.8, 1024 in 1.9) went away in Go 1.10. We keep Go 1.9's 1024, the last cap
    /// Go had: above any machine this runs on, and small enough that GOMAXPROCS times a
    /// duration or a byte count (CPU-limiter capacity, pause × procs) cannot overflow.
    public static let maxGomaxprocs = 1024

    /// The longest quarantine, in cycles (the cycle number in a quarantine entry has 31 bits).
    public static let maxQuarantineCycles = 1 << 20
    /// The longest stop-the-world watchdog period: one day.
    public static let maxWatchdogMilliseconds = 86_400_000

    /// Mark workers allowed when `markWorkers` is set explicitly.
    public static let maxMarkWorkers = 64

    /// Bounds of `reservedAddressSpace`: one arena, and 64 TiB (2^46 bytes).
    public static let reservedAddressSpaceRange = (64 << 20)...(1 << 46)

    // MARK: environment

    /// The configuration described by `GOGC`, `GOMEMLIMIT`, `GOMAXPROCS` and `GODEBUG`
    /// in `environment` (the process environment by default).
    ///
    /// As in Go, a variable set to the empty string counts as unset. Unlike Go, which
    /// ignores most malformed values (and throws on a malformed GOMEMLIMIT), every
    /// malformed value is rejected with an error naming the variable and the value.
    public static func fromEnvironment(_ environment: [String: String]? = nil) throws(ConfigurationError) -> Configuration {
        let env = environment ?? ProcessEnvironment.current()
        var c = Configuration()
        if let v = env["GOGC"], !v.isEmpty {
            c.gcPercent = try parseGOGC(v)
        }
        if let v = env["GOMEMLIMIT"], !v.isEmpty {
            c.memoryLimit = try parseGOMEMLIMIT(v)
        }
        if let v = env["GOMAXPROCS"], !v.isEmpty {
            c.gomaxprocs = try parseGOMAXPROCS(v)
        }
        if let v = env["GODEBUG"] {
            for item in v.split(separator: ",") where !item.isEmpty {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let first = kv.first, !first.isEmpty else { continue }   // "=1": no key
                let key = String(first)
                let value = kv.count > 1 ? String(kv[1]) : ""
                func flag() throws(ConfigurationError) -> Bool {
                    switch DecimalInteger(value) {
                    case .value(let n) where n >= 0: return n != 0
                    case .tooLarge: return true
                    default:
                        throw ConfigurationError(message: "invalid GODEBUG value \(key)=\(value): expected a non-negative integer")
                    }
                }
                func count(max: Int) throws(ConfigurationError) -> Int {
                    switch DecimalInteger(value) {
                    case .value(let n) where n >= 0 && n <= max: return n
                    default:
                        throw ConfigurationError(message: "invalid GODEBUG value \(key)=\(value): expected an integer from 0 to \(max)")
                    }
                }
                switch key {
                case "gctrace": c.gctrace = try flag()
                case "tricolorcheck": c.checked = try flag()
                case "clobberfree": c.clobberFree = try flag()
                case "scavtrace": c.scavtrace = try flag()
                case "tricolorbggrow": c.backgroundHeapGrowth = try flag()
                case "tricolorthp": c.transparentHugePages = try flag()
                case "gccheckmark": c.checkmark = try flag()
                case "tricolorinternalchecks": c.internalChecks = try flag()
                case "tricolorexpensivechecks": c.expensiveChecks = try flag()
                case "tricolorconservative": c.conservativeStackScan = try flag()
                case "gcshrinkstackoff": c.shrinkStacks = !(try flag())
                case "gcstress": c.gcStress = try count(max: Int(Int32.max))
                case "tricolorquarantine": c.quarantineCycles = try count(max: Configuration.maxQuarantineCycles)
                case "tricolorstwwatchdog":
                    let ms = try count(max: Configuration.maxWatchdogMilliseconds)
                    c.stopTheWorldWatchdogMilliseconds = ms == 0 ? nil : ms
                case "memprofilerate":
                    switch DecimalInteger(value) {
                    case .value(let n) where n >= 0: c.memProfileRate = n
                    case .tooLarge:
                        throw ConfigurationError(message: "invalid GODEBUG value memprofilerate=\(value): out of range (at most \(Int.max))")
                    default:
                        throw ConfigurationError(message: "invalid GODEBUG value memprofilerate=\(value): expected a non-negative integer")
                    }
                default: break  // unknown keys are ignored, as in Go
                }
            }
        }
        return c
    }

    /// Parse a GOGC value: a percentage or "off". A negative percentage means off (nil);
    /// one above `maxGCPercent`, however many digits, is clamped to it. The empty string
    /// is the default, 100: Go treats an empty variable as unset.
    public static func parseGOGC(_ v: String) throws(ConfigurationError) -> Int? {
        if v.isEmpty { return 100 }
        if v == "off" { return nil }
        switch DecimalInteger(v) {
        case .value(let n): return n < 0 ? nil : min(n, maxGCPercent)
        case .tooLarge: return maxGCPercent
        case .tooSmall: return nil
        case .invalid:
            throw ConfigurationError(message: "invalid GOGC value \"\(v)\": expected an integer percentage or \"off\"")
        }
    }

    /// Parse a GOMEMLIMIT value with Go's parseByteCount rules (runtime/string.go): a
    /// non-negative decimal integer with an optional unit B, KiB, MiB, GiB or TiB (powers
    /// of two). "off" and the empty string mean no limit (nil); so does a limit of exactly
    /// Int64.max bytes, Go's "no limit". A count that does not fit in 64 bits, before or
    /// after the unit is applied (`99999999TiB`), is rejected as Go rejects it.
    public static func parseGOMEMLIMIT(_ v: String) throws(ConfigurationError) -> Int? {
        if v.isEmpty || v == "off" { return nil }
        let units: [(suffix: String, shift: Int)] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0)]
        let unit = units.first { v.hasSuffix($0.suffix) } ?? ("", 0)
        let digits = String(v.dropLast(unit.suffix.count))
        let overflow = ConfigurationError(message: "invalid GOMEMLIMIT value \"\(v)\": does not fit in 64 bits (at most \(Int.max) bytes)")
        switch DecimalInteger(digits) {
        case .value(let n) where n >= 0:
            guard n <= Int.max >> unit.shift else { throw overflow }
            let bytes = n << unit.shift
            return bytes == Int.max ? nil : bytes
        case .tooLarge:
            throw overflow
        default:
            throw ConfigurationError(message: "invalid GOMEMLIMIT value \"\(v)\": expected a non-negative byte count with an optional unit B, KiB, MiB, GiB or TiB, or \"off\"")
        }
    }

    /// Parse a GOMAXPROCS value: a positive integer, clamped to `maxGomaxprocs` however
    /// many digits it has. (Go 1.19 ignores a malformed or non-positive value and uses
    /// the CPU count; we reject it, naming it.)
    public static func parseGOMAXPROCS(_ v: String) throws(ConfigurationError) -> Int {
        switch DecimalInteger(v) {
        case .value(let n) where n >= 1: return min(n, maxGomaxprocs)
        case .tooLarge: return maxGomaxprocs
        default:
            throw ConfigurationError(message: "invalid GOMAXPROCS value \"\(v)\": expected a positive integer")
        }
    }

    // MARK: validation

    /// Check every numeric field's range; the error names the field and the value.
    /// (`gcPercent` and the upper end of `gomaxprocs` are normalized on assignment.)
    func validate() throws(ConfigurationError) {
        if let m = memoryLimit, m < 0 {
            throw ConfigurationError(message: "invalid memoryLimit \(m): must be non-negative (nil means no limit)")
        }
        if let w = markWorkers, w < 0 || w > Configuration.maxMarkWorkers {
            throw ConfigurationError(message: "invalid markWorkers \(w): must be between 0 and \(Configuration.maxMarkWorkers)")
        }
        if let p = gomaxprocs, p < 1 {
            throw ConfigurationError(message: "invalid gomaxprocs \(p): must be at least 1 (at most \(Configuration.maxGomaxprocs); larger values are clamped)")
        }
        // Any non-negative rate is safe: the sampling distance saturates at Int.max / 2.
        if memProfileRate < 0 {
            throw ConfigurationError(message: "invalid memProfileRate \(memProfileRate): must be non-negative (0 turns the heap profile off)")
        }
        if gcStress < 0 {
            throw ConfigurationError(message: "invalid gcStress \(gcStress): must be non-negative (0 is off)")
        }
        if quarantineCycles < 0 || quarantineCycles > Configuration.maxQuarantineCycles {
            throw ConfigurationError(message: "invalid quarantineCycles \(quarantineCycles): must be between 0 and \(Configuration.maxQuarantineCycles)")
        }
        if let w = stopTheWorldWatchdogMilliseconds, w < 1 || w > Configuration.maxWatchdogMilliseconds {
            throw ConfigurationError(message: "invalid stopTheWorldWatchdogMilliseconds \(w): must be between 1 and \(Configuration.maxWatchdogMilliseconds) (nil turns the watchdog off)")
        }
        let space = Configuration.reservedAddressSpaceRange
        if reservedAddressSpace < space.lowerBound {
            throw ConfigurationError(message: "invalid reservedAddressSpace \(reservedAddressSpace): must be at least one 64 MiB arena (\(space.lowerBound) bytes)")
        }
        if reservedAddressSpace > space.upperBound {
            throw ConfigurationError(message: "invalid reservedAddressSpace \(reservedAddressSpace): at most 64 TiB (\(space.upperBound) bytes)")
        }
    }
}

/// A decimal integer as the environment spells it: an optional sign and at least one
/// digit, nothing else (no spaces, no underscores, no hex). Values past Int's range are
/// told apart from malformed text, so a caller can clamp them instead of rejecting.
enum DecimalInteger: Equatable {
    case value(Int)
    case tooLarge       // all digits, above Int.max
    case tooSmall       // all digits after '-', below Int.min
    case invalid

    init(_ s: String) {
        var body = Substring(s)
        var negative = false
        if let c = body.first, c == "+" || c == "-" {
            negative = c == "-"
            body = body.dropFirst()
        }
        guard !body.isEmpty, body.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            self = .invalid
            return
        }
        if let n = Int(s) {          // Int accepts the same sign rules
            self = .value(n)
        } else {
            self = negative ? .tooSmall : .tooLarge
        }
    }
}

/// An invalid configuration value: a malformed `GOGC`, `GOMEMLIMIT`, `GOMAXPROCS` or `GODEBUG`
/// setting, or a `Configuration` field out of range when a `Heap` is created.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    /// What is wrong, naming the variable or field and the value (`invalid GOGC value "abc":
    /// …`); `description` is the same text.
    public let message: String
    public var description: String { message }
}

enum ProcessEnvironment {
    static func current() -> [String: String] {
        var result: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                result[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return result
    }
}
