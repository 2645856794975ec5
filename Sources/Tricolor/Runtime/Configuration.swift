import Glibc

/// How a heap is set up. Read from the environment as Go reads it (`GOGC`, `GODEBUG`),
/// then overridable in code. Invalid values are rejected with an error that names them.
public struct Configuration: Sendable, Equatable {
    /// GOGC: the heap may grow to live × (1 + gcPercent/100) before the next cycle.
    /// nil turns the collector off (`GOGC=off`), like a negative value in Go.
    public var gcPercent: Int?
    /// Checked mode (`GODEBUG=tricolorcheck=1`): every allocation, load and store is
    /// validated and misuse traps with a message. Slow; for debugging.
    public var checked: Bool
    /// `GODEBUG=gctrace=1`: one line per collection on stderr.
    public var gctrace: Bool
    /// `GODEBUG=clobberfree=1`: freed objects are filled with 0xdeadbeef before reuse.
    public var clobberFree: Bool
    /// `GODEBUG=gccheckmark=1`: verify each mark phase with a second, stop-the-world mark.
    public var checkmark: Bool
    /// GOMEMLIMIT: a soft limit on the memory the runtime maps, in bytes; nil = none.
    public var memoryLimit: Int?
    /// Mark worker threads; nil = Go's rule (25% of GOMAXPROCS). 0 runs no background
    /// marking: cycles advance only through assists and `collect()` (for tests).
    public var markWorkers: Int?
    /// GOMAXPROCS for pacing and gctrace; nil = the number of online CPUs.
    public var gomaxprocs: Int?
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
        self.gomaxprocs = gomaxprocs
        self.gcPercent = gcPercent
        self.checked = checked
        self.gctrace = gctrace
        self.clobberFree = clobberFree
        self.checkmark = checkmark
        self.reservedAddressSpace = reservedAddressSpace
    }

    /// The configuration described by `GOGC` and `GODEBUG` in `environment`
    /// (the process environment by default).
    public static func fromEnvironment(_ environment: [String: String]? = nil) throws(ConfigurationError) -> Configuration {
        let env = environment ?? ProcessEnvironment.current()
        var c = Configuration()
        if let v = env["GOGC"] {
            c.gcPercent = try parseGOGC(v)
        }
        if let v = env["GOMEMLIMIT"] {
            let limit = try parseMemoryLimit(v)
            c.memoryLimit = limit == Int.max ? nil : limit
        }
        if let v = env["GOMAXPROCS"] {
            guard let n = Int(v), n >= 1 else {
                throw ConfigurationError(message: "invalid GOMAXPROCS value \"\(v)\": expected a positive integer")
            }
            c.gomaxprocs = n
        }
        if let v = env["GODEBUG"] {
            for item in v.split(separator: ",") where !item.isEmpty {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let first = kv.first, !first.isEmpty else { continue }   // "=1": no key
                let key = String(first)
                let value = kv.count > 1 ? String(kv[1]) : ""
                func flag() throws(ConfigurationError) -> Bool {
                    guard let n = Int(value), n >= 0 else {
                        throw ConfigurationError(message: "invalid GODEBUG value \(key)=\(value): expected a non-negative integer")
                    }
                    return n != 0
                }
                switch key {
                case "gctrace": c.gctrace = try flag()
                case "tricolorcheck": c.checked = try flag()
                case "clobberfree": c.clobberFree = try flag()
                case "gccheckmark": c.checkmark = try flag()
                case "memprofilerate":
                    guard let n = Int(value), n >= 0 else {
                        throw ConfigurationError(message: "invalid GODEBUG value memprofilerate=\(value): expected a non-negative integer")
                    }
                    c.memProfileRate = n
                default: break  // unknown keys are ignored, as in Go
                }
            }
        }
        return c
    }

    /// Parse a GOGC value: a percentage (may be negative, which means off) or "off".
    public static func parseGOGC(_ v: String) throws(ConfigurationError) -> Int? {
        if v == "off" { return nil }
        guard let n = Int(v) else {
            throw ConfigurationError(message: "invalid GOGC value \"\(v)\": expected an integer percentage or \"off\"")
        }
        return n < 0 ? nil : n
    }

    func validate() throws(ConfigurationError) {
        if let m = memoryLimit, m < 0 {
            throw ConfigurationError(message: "invalid memoryLimit \(m): must be non-negative")
        }
        if let w = markWorkers, w < 0 || w > 64 {
            throw ConfigurationError(message: "invalid markWorkers \(w): must be between 0 and 64")
        }
        if let p = gomaxprocs, p < 1 {
            throw ConfigurationError(message: "invalid gomaxprocs \(p): must be at least 1")
        }
        if memProfileRate < 0 {
            throw ConfigurationError(message: "invalid memProfileRate \(memProfileRate): must be non-negative (0 turns the heap profile off)")
        }
        if reservedAddressSpace < 64 << 20 {
            throw ConfigurationError(message: "invalid reservedAddressSpace \(reservedAddressSpace): must be at least one 64 MiB arena (67108864 bytes)")
        }
        if reservedAddressSpace > 1 << 46 {
            throw ConfigurationError(message: "invalid reservedAddressSpace \(reservedAddressSpace): at most 64 TiB (70368744177664 bytes)")
        }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
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
