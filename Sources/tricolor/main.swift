import ArgumentParser
import Foundation
import Tricolor
import TricolorWorkloads

@main
struct TricolorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tricolor",
        abstract: "Go's memory manager rebuilt in Swift: run workloads, inspect the allocator.",
        subcommands: [Run.self, SizeClasses.self, Bench.self])
}

struct SizeClasses: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sizeclasses",
        abstract: "Print Go's size-class table: class bytes/obj bytes/span objects tail_waste max_waste.")
    func run() { print(SizeClassGenerator.tableText()) }
}

enum Workload: String, ExpressibleByArgument, CaseIterable {
    case binaryTrees = "binary-trees"
    case gcbench
    case liveheap
    case leak
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workload on a Tricolor heap, then print a '# key=value' summary line.")

    @Argument(help: "The workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload

    @Argument(help: "Size parameter (binary-trees: max depth, default 10; leak: requests, default 200000).")
    var n: Int?

    @Option(name: .customLong("threads"), help: "Mutator threads sharing the work.")
    var threads: Int = 1

    @Option(name: .customLong("live-mib"), help: "liveheap: MiB kept live.")
    var liveMiB: Int = 1024

    @Option(name: .customLong("seconds"), help: "liveheap: seconds of garbage allocation.")
    var seconds: Double = 10

    @Option(name: .customLong("heap-profile"), help: "After the run (and a collection), write the heap profile here (pprof, gzipped).")
    var heapProfile: String?

    @Option(name: .customLong("mutex-profile"), help: "After the run, write the runtime-lock contention profile here (pprof, gzipped).")
    var mutexProfile: String?

    @Flag(name: .customLong("memstats"), help: "After the run, print MemStats and GCStats as JSON on stdout.")
    var memstats = false

    @Flag(name: .customLong("alloc-path"), help: "Count every allocation by the level that served it (mcache, mcentral, mheap, OS, large) and print the table after the run.")
    var allocPath = false

    @Option(name: .customLong("memprofilerate"), help: "Bytes per heap profile sample (Go's MemProfileRate; default 524288, 1 = every allocation, 0 = off).")
    var memProfileRate: Int?

    @Option(name: .customLong("mutexprofilefraction"), help: "Record 1 in N runtime-lock waits with a stack (Go's SetMutexProfileFraction; default 1 with --mutex-profile, else 0).")
    var mutexProfileFraction: Int?

    func validate() throws {
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256, got \(threads)") }
        if workload == .leak {
            if let n, n < 1 || n > 100_000_000 { throw ValidationError("leak: N (requests) must be between 1 and 100000000, got \(n)") }
        } else if let n, n < 0 || n > 30 { throw ValidationError("N must be between 0 and 30, got \(n)") }
        if workload != .binaryTrees && workload != .leak && n != nil { throw ValidationError("\(workload.rawValue) takes no size argument") }
        if let r = memProfileRate, r < 0 { throw ValidationError("--memprofilerate must be non-negative, got \(r)") }
        if let r = mutexProfileFraction, r < 0 { throw ValidationError("--mutexprofilefraction must be non-negative, got \(r)") }
        for path in [heapProfile, mutexProfile].compactMap({ $0 }) {
            let dir = (path as NSString).deletingLastPathComponent
            var isDir: ObjCBool = false
            if !dir.isEmpty && !(FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) {
                throw ValidationError("cannot write profile \(path): directory \(dir) does not exist")
            }
        }
        guard liveMiB >= 1 && liveMiB <= 16384 else { throw ValidationError("--live-mib must be between 1 and 16384, got \(liveMiB)") }
        guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600], got \(seconds)") }
    }

    func run() throws {
        let heap: Heap
        do {
            var config = try Configuration.fromEnvironment()
            if let r = memProfileRate { config.memProfileRate = r }
            if allocPath { config.allocPathStats = true }
            heap = try Heap(configuration: config)
        } catch {
            throw ValidationError("\(error)")
        }
        if let f = mutexProfileFraction ?? (mutexProfile != nil ? 1 : nil) { Heap.setMutexProfileFraction(f) }
        let t0 = monotonicSeconds()
        let out: (String) -> Void = { print($0) }
        var extra: [(String, String)] = [("threads", String(threads))]
        switch workload {
        case .binaryTrees: try BinaryTrees.run(heap: heap, n: n ?? 10, threads: threads, output: out)
        case .gcbench: try GCBench.run(heap: heap, threads: threads, output: out)
        case .liveheap: extra += try LiveHeap.run(heap: heap, liveMiB: liveMiB, seconds: seconds, output: out)
        case .leak: try Leak.run(heap: heap, requests: n ?? 200_000, output: out)
        }
        let wall = monotonicSeconds() - t0
        print(summaryLine(heap: heap, wallSeconds: wall, extra: extra))
        if allocPath { print(heap.allocPathStats().formatted(), terminator: "") }
        if let path = heapProfile {
            // Like `go test -memprofile`: collect first, so in-use figures are current.
            heap.collect()
            try writeFile(path, heap.heapProfile())
        }
        if let path = mutexProfile { try writeFile(path, Heap.mutexProfileData()) }
        if memstats { print(try memStatsJSON(heap)) }
    }

    func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            throw ValidationError("cannot write \(path)")
        }
    }

    /// MemStats and GCStats with Go's field names (Alloc, TotalAlloc, …, PauseNs).
    func memStatsJSON(_ heap: Heap) throws -> String {
        struct Both: Encodable { let MemStats: Tricolor.MemStats; let GCStats: Tricolor.GCStats }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .custom { path in
            let k = path.last!.stringValue
            return GoKey(stringValue: k.prefix(1).uppercased() + k.dropFirst())
        }
        let data = try enc.encode(Both(MemStats: heap.memStats(), GCStats: heap.gcStats()))
        return String(decoding: data, as: UTF8.self)
    }
}

struct GoKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Microbenchmarks (release builds only): allocation fast path.")

    @Argument(help: "alloc")
    var what: String = "alloc"

    @Option(name: .customLong("memprofilerate"), help: "Heap profile sampling rate in bytes (default 524288; 0 = off).")
    var memProfileRate: Int = 512 * 1024

    @Option(help: "Allocations per run.")
    var objects: Int = 10_000_000

    @Option(help: "Runs per case (the median is reported).")
    var runs: Int = 7

    func run() throws {
        guard objects > 0 else { throw ValidationError("--objects must be positive, got \(objects)") }
        guard runs > 0 else { throw ValidationError("--runs must be positive, got \(runs)") }
        guard what == "alloc" else { throw ValidationError("unknown benchmark \(what); expected: alloc") }
        guard memProfileRate >= 0 else { throw ValidationError("--memprofilerate must be non-negative, got \(memProfileRate)") }
        for result in try AllocBench.run(objects: objects, runs: runs, memProfileRate: memProfileRate) {
            print(AllocBench.format(result))
        }
    }
}
