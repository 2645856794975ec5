// `tricolor heapdump`: the analyzer of heap dumps written by `Heap.writeHeapDump`
// (`tricolor run … --heap-dump FILE`, or GODEBUG=tricolordump=PREFIX on a fatal error).
// Text by default, --json for scripts, --dot (why) for Graphviz. Each subcommand ends by
// checking that its standard output was written (exit 74 if not).

import ArgumentParser
import Foundation
import TricolorHeapDump

struct HeapDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heapdump",
        abstract: "Analyse heap dumps: top types by retained size, why an object is alive, growth between dumps, size-class fragmentation.",
        discussion: """
            Write a dump with `tricolor run leak --heap-dump leak.tchd`, with \
            `heap.writeHeapDump(to:)`, or on a fatal error with GODEBUG=tricolordump=PREFIX. \
            The format is documented in docs/heapdump-format.md.

              tricolor heapdump top leak.tchd
              tricolor heapdump why leak.tchd --type leak.CacheEntry --dot | dot -Tsvg > why.svg
              tricolor heapdump diff before.tchd after.tchd
              tricolor heapdump classes leak.tchd
            """,
        subcommands: [Top.self, Why.self, Diff.self, Classes.self],
        defaultSubcommand: Top.self)

    static func load(_ path: String) throws -> HeapDump {
        do {
            return try HeapDump(path: path)
        } catch let e as HeapDumpFormatError {
            throw ValidationError("\(path): \(e.description)")
        } catch {
            throw ValidationError("cannot read heap dump '\(path)': \(error.localizedDescription)")
        }
    }

    static func json<T: Encodable>(_ v: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try e.encode(v), as: UTF8.self)
    }

    struct Top: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Types by count, bytes and retained bytes (dominator tree).")
        @Argument(help: "The heap dump.") var file: String
        @Option(help: "Order: retained, bytes or count.") var sort: String = "retained"
        @Option(help: "Rows to print (1-100000).") var limit: Int = 20
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard HeapAnalysis.TopOrder(rawValue: sort) != nil else { throw ValidationError("invalid --sort '\(sort)': expected retained, bytes or count") }
            guard (1...100_000).contains(limit) else { throw ValidationError("invalid --limit '\(limit)': expected 1-100000") }
        }

        func run() throws {
            let dump = try HeapDumpCommand.load(file)
            let a = HeapAnalysis(dump)
            let rows = Array(a.top(order: HeapAnalysis.TopOrder(rawValue: sort)!).prefix(limit))
            if json {
                print(try HeapDumpCommand.json(rows))
            } else {
                let total = dump.sizes.reduce(0, +)
                let u = a.unreachable
                print("\(dump.objectCount) objects, \(HeapDumpText.bytes(total)), \(dump.roots.count) roots, \(dump.edgeTargets.count) pointers; \(u.count) objects (\(HeapDumpText.bytes(u.bytes))) unreachable, left out below")
                print(HeapDumpText.top(rows, limit: limit), terminator: "")
            }
            try checkStandardOutput()
        }
    }

    struct Why: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Why an object is alive: the shortest path from a named root, and its dominator chain.")
        @Argument(help: "The heap dump.") var file: String
        @Argument(help: "An address inside the object (0x… or decimal).") var address: String?
        @Option(name: .customLong("type"), help: "Instead of an address: the object of this type that retains the most.") var typeName: String?
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Print the path as a Graphviz digraph.") var dot = false

        func validate() throws {
            guard (address == nil) != (typeName == nil) else { throw ValidationError("give an ADDRESS or --type NAME (one of them)") }
            if let a = address, parseAddress(a) == nil { throw ValidationError("invalid ADDRESS '\(a)': expected 0x-prefixed hex or decimal") }
            if json && dot { throw ValidationError("--json and --dot cannot both be given") }
        }

        func run() throws {
            let dump = try HeapDumpCommand.load(file)
            let a = HeapAnalysis(dump)
            let w: HeapAnalysis.Why
            if let t = typeName {
                guard let r = a.why(type: t) else { throw ValidationError("no object of type '\(t)' in \(file)") }
                w = r
            } else {
                guard let r = a.why(address: parseAddress(address!)!) else { throw ValidationError("no object at \(address!) in \(file)") }
                w = r
            }
            if json { print(try HeapDumpCommand.json(w)) } else if dot { print(HeapDumpText.dot(w), terminator: "") } else { print(HeapDumpText.why(w), terminator: "") }
            try checkStandardOutput()
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Growth from dump A to dump B by type and by allocation site (leak hunting).")
        @Argument(help: "The earlier dump.") var a: String
        @Argument(help: "The later dump.") var b: String
        @Option(help: "Rows per table (1-100000).") var limit: Int = 15
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard (1...100_000).contains(limit) else { throw ValidationError("invalid --limit '\(limit)': expected 1-100000") }
        }

        func run() throws {
            let d = HeapAnalysis.diff(HeapAnalysis(try HeapDumpCommand.load(a)), HeapAnalysis(try HeapDumpCommand.load(b)))
            if json { print(try HeapDumpCommand.json(d)) } else { print(HeapDumpText.diff(d, limit: limit), terminator: "") }
            try checkStandardOutput()
        }
    }

    struct Classes: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fragmentation per size class.")
        @Argument(help: "The heap dump.") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let rows = HeapAnalysis.classes(try HeapDumpCommand.load(file))
            if json { print(try HeapDumpCommand.json(rows)) } else { print(HeapDumpText.classes(rows), terminator: "") }
            try checkStandardOutput()
        }
    }
}

func parseAddress(_ s: String) -> UInt64? {
    if s.hasPrefix("0x") || s.hasPrefix("0X") { return UInt64(s.dropFirst(2), radix: 16) }
    return UInt64(s)
}
