import ArgumentParser
import Foundation
import Tricolor
import TricolorProfiling
import TricolorWorkloads

@main
struct TricolorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tricolor",
        abstract: "Go's memory manager rebuilt in Swift: run workloads, inspect the allocator.",
        discussion: ExitStatus.helpText,
        version: Heap.version,
        subcommands: [Run.self, SizeClasses.self, Bench.self, HeapDumpCommand.self])
}

struct SizeClasses: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sizeclasses",
        abstract: "Print Go's size-class table: class bytes/obj bytes/span objects tail_waste max_waste.")
    func run() throws {
        print(Tricolor.SizeClasses.tableText())
        try checkStandardOutput()
    }
}

enum Workload: String, ExpressibleByArgument, CaseIterable {
    case binaryTrees = "binary-trees"
    case binaryTreesTyped = "binary-trees-typed"
    case gcbench
    case liveheap
    case leak
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a workload on a Tricolor heap, then print a '# key=value' summary line.",
        discussion: """
            Output files (--heap-profile, --mutex-profile, --heap-dump) are opened before \
            the workload runs and written like a shell redirect: symlinks are followed, only \
            regular files are accepted, '-' is standard output (text output then goes to \
            stderr). A heap dump always goes through a temporary file renamed over the \
            target, as --atomic-output does for the profiles.

            With --json, standard output carries one JSON object (version, workload, the \
            summary's pairs, MemStats, GCStats, and AllocPath with --alloc-path) and \
            nothing else; the workload's text goes to stderr: `tricolor run gcbench --json | jq .`

            When stderr is a terminal, a run longer than a few seconds shows a progress \
            line there (elapsed seconds, collections), erased before the summary.

            \(ExitStatus.helpText)
            """)

    @Argument(help: "The workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload

    /// The size argument as typed. Collected with `.allUnrecognized` so that a negative
    /// value ("-5") reaches `validate()` and is reported as an invalid N, not as an
    /// unknown option; unknown options land here too and are reported as such.
    @Argument(parsing: .allUnrecognized,
              help: ArgumentHelp("Size parameter (binary-trees: max depth 0-30, default 10; leak: requests 1-100000000, default 200000).", valueName: "n"))
    var sizeArguments: [String] = []

    /// The size argument's text ("--", the end of options, is dropped).
    var sizeText: [String] { sizeArguments.filter { $0 != "--" } }

    /// The size parameter; valid after `validate()`.
    var n: Int? { sizeText.first.flatMap { Int($0) } }

    @Option(name: .customLong("threads"), parsing: .unconditional, help: "Mutator threads sharing the work (1-256).",
            transform: NumericValue.integer(1...256))
    var threads: Int = 1

    @Option(name: .customLong("live-mib"), parsing: .unconditional, help: "liveheap: MiB kept live (1-16384).",
            transform: NumericValue.integer(1...16384))
    var liveMiB: Int = 1024

    @Option(name: .customLong("seconds"), parsing: .unconditional, help: "liveheap: seconds of garbage allocation (more than 0, at most 3600).",
            transform: NumericValue.seconds(above: 0, atMost: 3600))
    var seconds: Double = 10

    @Option(name: .customLong("heap-profile"), help: "After the run (and a collection), write the heap profile here (pprof, gzipped; '-' = stdout).")
    var heapProfile: String?

    @Option(name: .customLong("mutex-profile"), help: "After the run, write the runtime-lock contention profile here (pprof, gzipped; '-' = stdout).")
    var mutexProfile: String?

    @Flag(name: .customLong("atomic-output"), help: "Write output files through a temporary file renamed over the target, so readers never see a partial file.")
    var atomicOutput = false

    @Flag(name: .customLong("json"), help: "Print one JSON object on stdout (summary, MemStats, GCStats; AllocPath with --alloc-path) and send the workload's text to stderr.")
    var json = false

    @Flag(name: .customLong("memstats"), help: "The same as --json (MemStats and GCStats are in the JSON object).")
    var memstats = false

    @Flag(name: .customLong("no-progress"), help: "Never show the progress line (shown on a terminal stderr for runs longer than a few seconds).")
    var noProgress = false

    @Option(name: .customLong("progress-after"), parsing: .unconditional, help: ArgumentHelp("Seconds before the first progress line (0-3600; default 3).", visibility: .hidden),
            transform: NumericValue.seconds(atLeast: 0, atMost: 3600))
    var progressAfter: Double = 3

    /// Whether stdout carries the JSON report (and only it).
    var jsonReport: Bool { json || memstats }

    @Flag(name: .customLong("alloc-state"), help: "After the run, print the allocator's state: per size class, spans in mcaches and mcentral partial/full × swept/unswept, objects in use, fragmentation; free page runs; arenas; mutators (with --json: the AllocState key).")
    var allocState = false

    @Option(name: .customLong("heap-dump"), help: "After the run, write a heap dump here (docs/heapdump-format.md; read it with `tricolor heapdump`; '-' = stdout).")
    var heapDump: String?

    @Flag(name: .customLong("alloc-path"), help: "Count every allocation by the level that served it (mcache, mcentral, mheap, OS, large) and print the table after the run.")
    var allocPath = false

    @Option(name: .customLong("memprofilerate"), parsing: .unconditional, help: "Bytes per heap profile sample (Go's MemProfileRate; default 524288, 1 = every allocation, 0 = off).",
            transform: NumericValue.integer(0...Int.max))
    var memProfileRate: Int?

    @Option(name: .customLong("mutexprofilefraction"), parsing: .unconditional, help: "Record 1 in N runtime-lock waits with a stack (Go's SetMutexProfileFraction; 0-1000000; default 1 with --mutex-profile, else 0).",
            transform: NumericValue.integer(0...1_000_000))
    var mutexProfileFraction: Int?

    func validate() throws {
        let size = sizeText
        for a in size where a.hasPrefix("-") && Int(a) == nil && !NumericValue.isDecimal(a) {
            throw ValidationError("Unknown option '\(a)'")
        }
        if size.count > 1 {
            throw ValidationError("expected at most one size argument, got \(size.map { "'\($0)'" }.joined(separator: " "))")
        }
        let range: ClosedRange<Int>? = switch workload {
            case .binaryTrees, .binaryTreesTyped: 0...30
            case .leak: 1...100_000_000
            case .gcbench, .liveheap: nil
        }
        if let text = size.first {
            guard let range else { throw ValidationError("\(workload.rawValue) takes no size argument") }
            guard let n = Int(text) else {
                let why = NumericValue.isDecimal(text) ? NumericValue.describe(range) : "expected an integer"
                throw ValidationError("\(workload.rawValue): invalid N '\(text)': \(why)")
            }
            guard range.contains(n) else {
                throw ValidationError("\(workload.rawValue): invalid N '\(text)': \(NumericValue.describe(range))")
            }
        }
        let toStandardOutput = outputPaths.filter { $0.path == "-" }.map(\.option)
        if toStandardOutput.count > 1 {
            throw ValidationError("\(toStandardOutput.joined(separator: " and ")) cannot all write to standard output ('-')")
        }
        if jsonReport, let option = toStandardOutput.first {
            throw ValidationError("--json and \(option) - cannot both write to standard output")
        }
    }

    func run() throws {
        // 1. The environment (GOGC, GOMEMLIMIT, GOMAXPROCS, GODEBUG).
        var config: Configuration
        do {
            config = try Configuration.fromEnvironment()
        } catch {
            reportError("\(error)")
            throw ExitCode(ExitStatus.config)
        }
        if let r = memProfileRate { config.memProfileRate = r }
        if allocPath { config.allocPathStats = true }

        // 2. Output files, before any work: a path that cannot be written fails now.
        let outputs = try openOutputs()
        let heapOut = outputs.first { $0.option == "--heap-profile" }
        let mutexOut = outputs.first { $0.option == "--mutex-profile" }
        let dumpOut = outputs.first { $0.option == "--heap-dump" }
        let textToStderr = jsonReport || outputs.contains { $0.isStandardOutput }
        var progress: ProgressLine? = nil    // erased before each line of text
        let write: (String) -> Void = textToStderr ? { reportLine($0) } : { print($0) }
        let say: (String) -> Void = { line in
            if let progress { progress.writingText { write(line) } } else { write(line) }
        }
        func fail(_ message: String, _ status: Int32) -> ExitCode {
            outputs.forEach { $0.abandon() }
            reportError(message)
            return ExitCode(status)
        }

        // 3. The heap and the workload.
        let heap: Heap
        do {
            heap = try Heap(configuration: config)
        } catch let error as ConfigurationError {
            throw fail("\(error)", ExitStatus.config)
        } catch {
            throw fail("cannot create the heap: \(error)", ExitStatus.failure)
        }
        if let f = mutexProfileFraction ?? (mutexProfile != nil ? 1 : nil) { Heap.setMutexProfileFraction(f) }
        progress = showProgress(heap)
        let t0 = monotonicSeconds()
        var extra: [(String, String)] = [("threads", String(threads))]
        do {
            defer { progress?.stop() }
            switch workload {
            case .binaryTrees: try BinaryTrees.run(heap: heap, n: n ?? 10, threads: threads, output: say)
            case .binaryTreesTyped: try BinaryTreesTyped.run(heap: heap, n: n ?? 10, output: say)
            case .gcbench: try GCBench.run(heap: heap, threads: threads, output: say)
            case .liveheap: extra += try LiveHeap.run(heap: heap, liveMiB: liveMiB, seconds: seconds, output: say)
            case .leak: try Leak.run(heap: heap, requests: n ?? 200_000, output: say)
            }
        } catch {
            throw fail("\(workload.rawValue): \(error)", ExitStatus.failure)
        }
        let wall = monotonicSeconds() - t0
        let summary = summaryLine(heap: heap, wallSeconds: wall, extra: extra)
        say(summary)
        if allocPath { say(heap.allocPathStats().formatted().trimmingSuffix("\n")) }
        if allocState { say(heap.allocatorState().description.trimmingSuffix("\n")) }

        // 4. The outputs. Every failure is reported; the status says one happened.
        var writeFailed = false
        if let out = heapOut {
            // Like `go test -memprofile`: collect first, so in-use figures are current.
            heap.collect()
            do { try out.write(heap.heapProfile()) } catch { reportError(error.message); writeFailed = true }
        }
        if let out = dumpOut {
            // The dump streams into the file opened before the run (a temporary beside
            // it), with the sampled stacks' functions named as writeHeapDumpSymbolized does.
            var dumped: HeapDumpSummary? = nil
            do {
                try out.write { fd in
                    dumped = try heap.writeHeapDump(toFileDescriptor: fd) { pc in
                        // `pc` is already a call site; symbolize(stack:) takes return addresses.
                        let frames = heap.symbolize(stack: [pc &+ 1])
                        return frames.isEmpty ? nil : frames.map(\.function).joined(separator: "\n")
                    }
                }
                if let sum = dumped {
                    say("# heap dump: \(out.path): \(sum.objects) objects, \(sum.edges) pointers, \(sum.roots) roots, \(sum.fileBytes) bytes, pause \(sum.pauseNs / 1000) µs")
                }
            } catch { reportError(error.message); writeFailed = true }
        }
        if let out = mutexOut {
            do { try out.write(Heap.mutexProfileData()) } catch { reportError(error.message); writeFailed = true }
        }
        if jsonReport { print(try report(heap, summary: summary).json()) }
        if !standardOutputIsWritten() { writeFailed = true }
        if writeFailed { throw ExitCode(ExitStatus.ioError) }
    }

    /// The output path options, with their values.
    var outputPaths: [(option: String, path: String?)] {
        [("--heap-profile", heapProfile), ("--mutex-profile", mutexProfile), ("--heap-dump", heapDump)]
    }

    /// Opens every output path option, reporting each one that fails; on any failure the
    /// others are abandoned and the run stops with `ExitStatus.cannotCreate` (usage for
    /// two options naming one file), before the workload. The heap dump is always atomic:
    /// it is large, written with the world stopped, and useless when partial.
    func openOutputs() throws -> [OutputFile] {
        var outputs: [OutputFile] = []
        var failed = false
        for (option, path) in outputPaths {
            guard let path else { continue }
            do {
                let atomic = atomicOutput || option == "--heap-dump"
                outputs.append(try OutputFile.open(option: option, path: path, atomic: atomic))
            } catch {
                reportError(error.message)
                failed = true
            }
        }
        if failed {
            outputs.forEach { $0.abandon() }
            throw ExitCode(ExitStatus.cannotCreate)
        }
        for (i, a) in outputs.enumerated() {
            for b in outputs[(i + 1)...] where a.identity == b.identity {
                outputs.forEach { $0.abandon() }
                reportError("\(a.option) and \(b.option) name the same file ('\(a.path)', '\(b.path)')")
                throw ExitCode(ExitStatus.usage)
            }
        }
        return outputs
    }

    /// The `--json` report (JSONReport.swift) of a finished run.
    func report(_ heap: Heap, summary: String) -> RunReport {
        RunReport(version: Heap.version, workload: workload.rawValue, n: n, threads: threads,
                  summary: RunReport.summaryPairs(summary), MemStats: heap.memStats(),
                  GCStats: heap.gcStats(), AllocPath: allocPath ? heap.allocPathStats() : nil,
                  AllocState: allocState ? heap.allocatorState() : nil,
                  Lifecycle: heap.lifecycleStats())
    }

    /// The progress line (ProgressLine.swift), started, when stderr is a terminal.
    func showProgress(_ heap: Heap) -> ProgressLine? {
        guard !noProgress, ProgressLine.stderrIsTerminal else { return nil }
        let p = ProgressLine(title: "run \(workload.rawValue)", heap: heap, delay: progressAfter,
                         expectedSeconds: workload == .liveheap ? seconds : nil)
        p.begin()
        return p
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

    @Option(name: .customLong("dump-path"), help: "heapdump: where to write the dump (default tricolor-bench.tchd in the temporary directory, $TMPDIR).")
    var dumpPath: String?

    @Argument(help: "alloc (allocation paths), stack (shadow stack growth by copying), growth (operation latency while the heap grows), spike (RSS while idle after a spike), heapdump (dump write pause and rate, inspect cost; --objects live objects) or lifecycle (finalizers, weak references, pools)")
    var what: String = "alloc"

    @Option(name: .customLong("memprofilerate"), parsing: .unconditional, help: "Heap profile sampling rate in bytes (default 524288; 0 = off).",
            transform: NumericValue.integer(0...Int.max))
    var memProfileRate: Int = 512 * 1024

    @Option(parsing: .unconditional, help: "Allocations per run (1-1000000000).",
            transform: NumericValue.integer(1...1_000_000_000))
    var objects: Int = 10_000_000

    @Option(parsing: .unconditional, help: "Runs per case, the median is reported (1-1000).",
            transform: NumericValue.integer(1...1000))
    var runs: Int = 7

    @Option(parsing: .unconditional, help: "growth: MiB the message ring grows to; spike: MiB of the spike (1-65536; default 400 and 512).",
            transform: NumericValue.integer(1...65536))
    var mib: Int?

    @Option(parsing: .unconditional, help: "spike: idle seconds to watch (1-3600).",
            transform: NumericValue.integer(1...3600))
    var seconds: Int = 10

    func validate() throws {
        guard ["alloc", "stack", "growth", "spike", "heapdump", "lifecycle"].contains(what) else { throw ValidationError("unknown benchmark '\(what)'; expected: alloc, stack, growth, spike, heapdump, lifecycle") }
    }

    func run() throws {
        try runBenchmark()
        try checkStandardOutput()
    }

    func runBenchmark() throws {
        if what == "growth" {
            let heap = try Heap(configuration: Configuration.fromEnvironment())
            for line in GrowthLatency.format(try GrowthLatency.run(heap: heap, mib: mib ?? 400)) { print(line) }
            return
        }
        if what == "spike" {
            let heap = try Heap(configuration: Configuration.fromEnvironment())
            for line in try SpikeIdle.run(heap: heap, mib: mib ?? 512, seconds: seconds) { print(line) }
            return
        }
        if what == "heapdump" {
            try HeapDumpBench.run(objects: objects, path: dumpPath ?? NSTemporaryDirectory() + "tricolor-bench.tchd", runs: runs)
            return
        }
        if what == "stack" {
            print(StackBench.format(try StackBench.run(runs: runs)))
            return
        }
        if what == "lifecycle" {
            print(LifecycleBench.format(try LifecycleBench.run(runs: runs)))
            return
        }
        for result in try AllocBench.run(objects: objects, runs: runs, memProfileRate: memProfileRate) {
            print(AllocBench.format(result))
        }
    }
}

/// The end of every subcommand: exits with `ExitStatus.ioError` when standard output
/// was not all written.
func checkStandardOutput() throws {
    if !standardOutputIsWritten() { throw ExitCode(ExitStatus.ioError) }
}

/// One line on stderr (text output while standard output carries a profile).
func reportLine(_ s: String) {
    var bytes = Array((s + "\n").utf8)
    OutputFile.writeAll(STDERR_FILENO, &bytes)
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
