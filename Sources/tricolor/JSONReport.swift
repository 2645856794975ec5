// The machine-readable report of `tricolor run --json`: one JSON object on standard
// output, and nothing else there. The workload's text, the '#' summary line and the
// allocation-path table go to standard error instead, so `tricolor run … --json | jq .`
// always parses.
//
// Shape (keys sorted; "n" is the size argument as given, absent when the workload's
// default was used; "AllocPath" only with --alloc-path, "AllocState" only with --alloc-state):
//   { "version": "0.1.0", "workload": "binary-trees", "n": 10, "threads": 1,
//     "summary": { "wall_s": 0.012, "numgc": 3, … },      // the '#' line's pairs
//     "MemStats": { "Alloc": …, "TotalAlloc": …, … },    // Go's field names
//     "GCStats": { "NumGC": …, "PauseTotal": …, … },
//     "AllocPath": { "Enabled": true, "Levels": […], … } }

import Foundation
import Tricolor

/// A number or a string, as the summary line's values are.
enum SummaryValue: Encodable, Equatable {
    case int(Int)
    case double(Double)
    case string(String)

    init(_ text: String) {
        if let i = Int(text) { self = .int(i) } else if let d = Double(text), d.isFinite { self = .double(d) } else { self = .string(text) }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        }
    }
}

struct RunReport: Encodable {
    let version: String
    let workload: String
    let n: Int?
    let threads: Int
    let summary: [String: SummaryValue]
    let MemStats: Tricolor.MemStats
    let GCStats: Tricolor.GCStats
    let AllocPath: AllocPathStats?
    /// `--alloc-state`: the allocator at the end of the run (Heap.allocatorState()).
    var AllocState: AllocatorState? = nil
    /// Finalizers, cleanups, weak handles, pools (Heap.lifecycleStats()).
    var Lifecycle: LifecycleStats? = nil

    /// The pairs of a `# key=value key=value` summary line.
    static func summaryPairs(_ line: String) -> [String: SummaryValue] {
        var out: [String: SummaryValue] = [:]
        for word in line.split(separator: " ") where word != "#" {
            guard let eq = word.firstIndex(of: "=") else { continue }
            out[String(word[..<eq])] = SummaryValue(String(word[word.index(after: eq)...]))
        }
        return out
    }

    /// The report as text: pretty-printed, keys sorted, MemStats/GCStats/AllocPath fields
    /// capitalized as Go's (`heapAlloc` → `HeapAlloc`); the summary keeps its own keys.
    func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .custom { path in
            let k = path.last!.stringValue
            // Top-level keys and the summary's keys stay as they are.
            if path.count == 1 || (path.count == 2 && path[0].stringValue == "summary") { return GoKey(stringValue: k) }
            return GoKey(stringValue: k.prefix(1).uppercased() + k.dropFirst())
        }
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }
}
