import ArgumentParser
import Glibc
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
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workload on a Tricolor heap, then print a '# key=value' summary line.")

    @Argument(help: "The workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload

    @Argument(help: "Size parameter (binary-trees: max depth, default 10).")
    var n: Int?

    @Option(name: .customLong("threads"), help: "Mutator threads sharing the work.")
    var threads: Int = 1

    @Option(name: .customLong("live-mib"), help: "liveheap: MiB kept live.")
    var liveMiB: Int = 1024

    @Option(name: .customLong("seconds"), help: "liveheap: seconds of garbage allocation.")
    var seconds: Double = 10

    func validate() throws {
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be between 1 and 256, got \(threads)") }
        if let n, n < 0 || n > 30 { throw ValidationError("N must be between 0 and 30, got \(n)") }
        if workload != .binaryTrees && n != nil { throw ValidationError("\(workload.rawValue) takes no size argument") }
        guard liveMiB >= 1 && liveMiB <= 16384 else { throw ValidationError("--live-mib must be between 1 and 16384, got \(liveMiB)") }
        guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600], got \(seconds)") }
    }

    func run() throws {
        let heap: Heap
        do {
            heap = try Heap(configuration: try Configuration.fromEnvironment())
        } catch {
            throw ValidationError("\(error)")
        }
        let t0 = monotonicSeconds()
        let out: (String) -> Void = { print($0) }
        var extra: [(String, String)] = [("threads", String(threads))]
        switch workload {
        case .binaryTrees: try BinaryTrees.run(heap: heap, n: n ?? 10, threads: threads, output: out)
        case .gcbench: try GCBench.run(heap: heap, threads: threads, output: out)
        case .liveheap: extra += try LiveHeap.run(heap: heap, liveMiB: liveMiB, seconds: seconds, output: out)
        }
        let wall = monotonicSeconds() - t0
        print(summaryLine(heap: heap, wallSeconds: wall, extra: extra))
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Microbenchmarks (release builds only): allocation fast path.")

    @Argument(help: "alloc")
    var what: String = "alloc"

    func run() throws {
        guard what == "alloc" else { throw ValidationError("unknown benchmark \(what); expected: alloc") }
        for line in try AllocBench.run() { print(line) }
    }
}
