import CZlib
import Foundation
import XCTest
@_spi(Testing) @testable import Tricolor
@testable import TricolorProfiling

/// The pprof encoder (Pprof.swift): decoded back with an independent reader written here,
/// gzip checked against zlib's inflate, bytes pinned by a golden encoding, and the output
/// opened by `go tool pprof` when Go is installed.
final class PprofTests: XCTestCase {

    // MARK: Fixtures

    /// A symbol table for made-up PCs. 0x1000 has an inlined frame; 0x2000 has no symbols
    /// (the encoder names it after its address); 0x3000 is in a shared library.
    static let symbols: [UInt: [ProfileFrame]] = [
        0x1000: [ProfileFrame(function: "MyApp.Cache.insert(_:)", file: "/src/Cache.swift", line: 42),
                 ProfileFrame(function: "MyApp.makeLeakyCache(Swift.Int) -> ()", file: "/src/main.swift", line: 10)],
        0x1008: [ProfileFrame(function: "MyApp.makeLeakyCache(Swift.Int) -> ()", file: "/src/main.swift", line: 12)],
        0x1010: [ProfileFrame(function: "main", file: "/src/main.swift", line: 30)],
        0x3000: [ProfileFrame(function: "swift_allocObject")],
        0x1018: [ProfileFrame(function: "MyApp.Box<[Swift.Int]>.withLock<A>((inout [Swift.Int]) throws -> A) throws -> A",
                              file: "/src/Box.swift", line: 7)],
    ]

    static let mainMapping = ProfileMapping(start: 0x1000, limit: 0x2000, offset: 0x400, file: "/usr/bin/myapp", buildID: "4d795f6275696c64")
    static let libMapping = ProfileMapping(start: 0x3000, limit: 0x4000, offset: 0, file: "/usr/lib/libswiftCore.so", buildID: "")

    static let heapSampleTypes: [(type: String, unit: String)] = [
        ("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes"),
    ]

    /// A heap-shaped profile (runtime/pprof's sample types, digest §16.8) over `symbols`.
    static func heapProfile(defaultSampleType: String? = nil, symbolize: @escaping (UInt) -> [ProfileFrame] = { symbols[$0] ?? [] }) -> PprofBuilder {
        var b = PprofBuilder(sampleTypes: heapSampleTypes, periodType: ("space", "bytes"), period: 524288,
                             defaultSampleType: defaultSampleType, symbolize: symbolize)
        b.timeNanos = 1_700_000_000_123_456_789
        b.durationNanos = 0
        b.addMapping(mainMapping)
        b.addSample(stack: [0x1000, 0x1010], values: [4, 4096, 2, 2048], numLabels: [("bytes", 1024, nil)])
        b.addSample(stack: [0x1008, 0x1010], values: [1, 48, 0, 0], numLabels: [("bytes", 48, "bytes")])
        b.addSample(stack: [0x3000, 0x2000, 0x1000, 0x1010], values: [7, 112, 7, 112])
        // Added after the samples on purpose: mapping ids are resolved when encoding.
        b.addMapping(libMapping)
        return b
    }

    // MARK: Round trip

    func testRoundTripDecodesEverything() throws {
        var calls: [UInt] = []
        var b = Self.heapProfile(defaultSampleType: "alloc_space") { pc in
            calls.append(pc)
            return Self.symbols[pc] ?? []
        }
        b.durationNanos = 5_000_000_000
        let p = try DecodedProfile(b.encode())

        XCTAssertEqual(calls, [0x1000, 0x1010, 0x1008, 0x3000, 0x2000], "each distinct PC is symbolized once, in first-seen order")

        XCTAssertEqual(p.stringTable.first, "")
        XCTAssertEqual(Set(p.stringTable).count, p.stringTable.count, "string table entries are unique")
        XCTAssertEqual(p.sampleTypes, Self.heapSampleTypes.map { DecodedValueType(type: $0.type, unit: $0.unit) })
        XCTAssertEqual(p.periodType, DecodedValueType(type: "space", unit: "bytes"))
        XCTAssertEqual(p.period, 524288)
        XCTAssertEqual(p.defaultSampleType, "alloc_space")
        XCTAssertEqual(p.timeNanos, 1_700_000_000_123_456_789)
        XCTAssertEqual(p.durationNanos, 5_000_000_000)
        XCTAssertEqual(p.dropFrames, "")
        XCTAssertEqual(p.keepFrames, "")

        // Samples: values, stacks (inline frames expanded, innermost first) and labels.
        XCTAssertEqual(p.samples.map(\.values), [[4, 4096, 2, 2048], [1, 48, 0, 0], [7, 112, 7, 112]])
        XCTAssertEqual(try p.samples.map { try p.functionNames($0) }, [
            ["MyApp.Cache.insert(_:)", "MyApp.makeLeakyCache(Swift.Int) -> ()", "main"],
            ["MyApp.makeLeakyCache(Swift.Int) -> ()", "main"],
            ["swift_allocObject", "0x2000", "MyApp.Cache.insert(_:)", "MyApp.makeLeakyCache(Swift.Int) -> ()", "main"],
        ])
        XCTAssertEqual(p.samples.map(\.labels), [
            [DecodedLabel(key: "bytes", str: "", num: 1024, numUnit: "")],
            [DecodedLabel(key: "bytes", str: "", num: 48, numUnit: "bytes")],
            [],
        ])

        // Locations: one per distinct PC (0x1000 and 0x1010 are used by several samples),
        // ids 1… in first-seen order, mapped to the mapping that contains the PC.
        XCTAssertEqual(p.locations.map(\.id), [1, 2, 3, 4, 5])
        XCTAssertEqual(p.locations.map(\.address), [0x1000, 0x1010, 0x1008, 0x3000, 0x2000])
        XCTAssertEqual(p.locations.map(\.mappingID), [1, 1, 1, 2, 0])
        XCTAssertEqual(p.samples.map(\.locationIDs), [[1, 2], [3, 2], [4, 5, 1, 2]])
        XCTAssertEqual(p.locations[0].lines.map(\.line), [42, 10], "inline frames: callee first, caller last")

        // Functions: deduplicated by (name, file); no system_name, so that pprof keeps the
        // names as they are (it "simplifies" a name equal to its system_name).
        XCTAssertEqual(p.functions.map(\.id), [1, 2, 3, 4, 5])
        XCTAssertEqual(p.functions.map(\.name), ["MyApp.Cache.insert(_:)", "MyApp.makeLeakyCache(Swift.Int) -> ()", "main", "swift_allocObject", "0x2000"])
        XCTAssertEqual(p.functions.map(\.systemName), ["", "", "", "", ""])
        XCTAssertEqual(p.functions.map(\.filename), ["/src/Cache.swift", "/src/main.swift", "/src/main.swift", "", ""])
        XCTAssertEqual(p.locations[2].lines, [DecodedLine(functionID: 2, line: 12)], "0x1008 reuses makeLeakyCache's function")

        // Mappings: symbolization flags tell pprof not to symbolize again.
        XCTAssertEqual(p.mappings, [
            DecodedMapping(id: 1, start: 0x1000, limit: 0x2000, offset: 0x400, file: "/usr/bin/myapp", buildID: "4d795f6275696c64",
                           hasFunctions: true, hasFilenames: true, hasLineNumbers: true, hasInlineFrames: true),
            DecodedMapping(id: 2, start: 0x3000, limit: 0x4000, offset: 0, file: "/usr/lib/libswiftCore.so", buildID: "",
                           hasFunctions: true, hasFilenames: false, hasLineNumbers: false, hasInlineFrames: false),
        ])
    }

    func testEmptyProfileAndUnsetOptionalFields() throws {
        let b = PprofBuilder(sampleTypes: [("contentions", "count"), ("delay", "nanoseconds")],
                             periodType: ("contentions", "count"), period: 1) { _ in [] }
        let p = try DecodedProfile(b.encode())
        XCTAssertEqual(p.stringTable, ["", "contentions", "count", "delay", "nanoseconds"])
        XCTAssertEqual(p.sampleTypes, [DecodedValueType(type: "contentions", unit: "count"), DecodedValueType(type: "delay", unit: "nanoseconds")])
        XCTAssertEqual(p.periodType, DecodedValueType(type: "contentions", unit: "count"))
        XCTAssertEqual(p.period, 1)
        XCTAssertEqual(p.defaultSampleType, "")
        XCTAssertEqual(p.timeNanos, 0)
        XCTAssertTrue(p.samples.isEmpty && p.locations.isEmpty && p.functions.isEmpty && p.mappings.isEmpty)
    }

    func testNegativeAndLargeValuesSurvive() throws {
        var b = PprofBuilder(sampleTypes: [("v", "count")], periodType: ("v", "count"), period: Int64.max) { _ in [] }
        b.addSample(stack: [UInt.max], values: [-1], numLabels: [("n", Int64.min, "bytes")])
        b.addSample(stack: [], values: [Int64.max])
        let p = try DecodedProfile(b.encode())
        XCTAssertEqual(p.period, Int64.max)
        XCTAssertEqual(p.samples.map(\.values), [[-1], [Int64.max]])
        XCTAssertEqual(p.samples[0].labels, [DecodedLabel(key: "n", str: "", num: Int64.min, numUnit: "bytes")])
        XCTAssertEqual(p.locations.map(\.address), [UInt64(UInt.max)])
        XCTAssertEqual(try p.functionNames(p.samples[0]), ["0x" + String(UInt.max, radix: 16)])
        XCTAssertEqual(p.samples[1].locationIDs, [])
    }

    // MARK: gzip

    func testGzipInflatesToTheRawEncoding() throws {
        let raw = Self.heapProfile().encode()
        let gz = gzipCompress(raw)
        XCTAssertEqual(Array(gz.prefix(2)), [0x1f, 0x8b], "gzip magic")
        XCTAssertEqual(gz[2], 8, "CM = deflate")
        XCTAssertEqual(try gunzip(gz), raw)
    }

    func testGzipEdgeSizes() throws {
        // Empty input; and incompressible input larger than zlib's internal buffers.
        XCTAssertEqual(try gunzip(gzipCompress([])), [])
        var rng = SplitMix64(seed: 0x5EED)
        let noise = (0..<300_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        XCTAssertEqual(try gunzip(gzipCompress(noise)), noise)
        let runs = [UInt8](repeating: 7, count: 1 << 20)
        let gz = gzipCompress(runs)
        XCTAssertLessThan(gz.count, runs.count / 100)
        XCTAssertEqual(try gunzip(gz), runs)
    }

    // MARK: Golden bytes

    /// A small CPU-shaped profile whose encoding is pinned byte for byte.
    static func goldenProfile() -> PprofBuilder {
        let table: [UInt: [ProfileFrame]] = [
            0x401000: [ProfileFrame(function: "leaf", file: "a.swift", line: 3),
                       ProfileFrame(function: "root", file: "a.swift", line: 300)],
            0x401100: [ProfileFrame(function: "root", file: "a.swift", line: 301)],
        ]
        var b = PprofBuilder(sampleTypes: [("samples", "count"), ("cpu", "nanoseconds")],
                             periodType: ("cpu", "nanoseconds"), period: 10_000_000,
                             defaultSampleType: "cpu") { table[$0] ?? [] }
        b.timeNanos = 1_000_000_000
        b.durationNanos = 2_000_000_000
        b.addMapping(ProfileMapping(start: 0x400000, limit: 0x500000, offset: 0, file: "/bin/a", buildID: "ab"))
        b.addSample(stack: [0x401000, 0x401100], values: [3, 30_000_000], numLabels: [("bytes", 200, "bytes")])
        b.addSample(stack: [0x401100], values: [1, 10_000_000])
        return b
    }

    /// Checked field by field against profile.proto (numbers, wire types, zero fields left
    /// out, string indices) with a throwaway dump script, and with `go tool pprof -raw`,
    /// which shows both samples, the inline frame and the mapping as [FN][FL][LN][IN].
    /// Regenerate only for a deliberate format change.
    static let goldenHex = """
        0a04080110020a040803100412140a0201021205038087a70e1a07080a18c801200a120a0a010212050180ade2041a18
        08011080808002188080c0022805300638014001480150012216080110011880a080022204080110032205080210ac02
        2210080210011880a280022205080210ad022a060801100720082a060802100920083200320773616d706c6573320563
        6f756e743203637075320b6e616e6f7365636f6e647332062f62696e2f613202616232046c6561663207612e73776966
        743204726f6f7432056279746573488094ebdc035080a8d6b9075a04080310046080ade2047003
        """.filter { !$0.isWhitespace }

    func testGoldenEncoding() throws {
        let bytes = Self.goldenProfile().encode()
        XCTAssertEqual(hex(bytes), Self.goldenHex)
        XCTAssertEqual(Self.goldenProfile().encode(), bytes, "encoding is deterministic")
        let p = try DecodedProfile(bytes)
        XCTAssertEqual(try p.samples.map { try p.functionNames($0) }, [["leaf", "root", "root"], ["root"]])
    }

    // MARK: go tool pprof

    func testGoToolPprofReadsHeapProfile() throws {
        let go = try goTool()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("heap.pb.gz")
        try Data(gzipCompress(Self.heapProfile().encode())).write(to: file)

        let top = try runTool(go, ["tool", "pprof", "-top", "-sample_index=alloc_space", file.path], home: dir)
        XCTAssertTrue(top.contains("MyApp.makeLeakyCache(Swift.Int) -> ()"), top)
        XCTAssertTrue(top.contains("swift_allocObject"), top)
        XCTAssertTrue(top.contains("0x2000"), top)
        XCTAssertTrue(top.contains("alloc_space"), top)

        let traces = try runTool(go, ["tool", "pprof", "-traces", file.path], home: dir)
        XCTAssertTrue(traces.contains("MyApp.Cache.insert(_:)"), traces)
        XCTAssertTrue(traces.contains("MyApp.makeLeakyCache(Swift.Int) -> ()"), traces)
        XCTAssertTrue(traces.contains("bytes:"), traces)
    }

    func testGoToolPprofReadsMutexProfile() throws {
        let go = try goTool()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var b = PprofBuilder(sampleTypes: [("contentions", "count"), ("delay", "nanoseconds")],
                             periodType: ("contentions", "count"), period: 1) { Self.symbols[$0] ?? [] }
        b.addMapping(Self.mainMapping)
        b.addSample(stack: [0x1008, 0x1010], values: [3, 1_500_000])
        b.addSample(stack: [0x1000, 0x1010], values: [1, 250_000])
        b.addSample(stack: [0x1018, 0x1010], values: [2, 10_000])
        let file = dir.appendingPathComponent("mutex.pb.gz")
        try Data(gzipCompress(b.encode())).write(to: file)

        let top = try runTool(go, ["tool", "pprof", "-top", "-sample_index=delay", file.path], home: dir)
        XCTAssertTrue(top.contains("MyApp.makeLeakyCache(Swift.Int) -> ()"), top)
        XCTAssertTrue(top.contains("delay"), top)
        let traces = try runTool(go, ["tool", "pprof", "-traces", file.path], home: dir)
        XCTAssertTrue(traces.contains("MyApp.Cache.insert(_:)"), traces)
        XCTAssertTrue(traces.contains("main"), traces)
        XCTAssertTrue(traces.contains("MyApp.Box<[Swift.Int]>.withLock<A>((inout [Swift.Int]) throws -> A) throws -> A"), traces)
    }

}

// MARK: Helpers (shared with ProfilingTests)

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

/// `gz` inflated with zlib (inflateInit2 with windowBits 15 + 32: gzip header detected).
func gunzip(_ gz: [UInt8]) throws -> [UInt8] {
    var stream = z_stream()
    guard tricolor_inflateInitAuto(&stream) == Z_OK else { throw DecodeError("inflateInit2 failed") }
    defer { inflateEnd(&stream) }
    var input = gz
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    var rc: Int32 = Z_OK
    input.withUnsafeMutableBufferPointer { inBuf in
        stream.next_in = inBuf.baseAddress
        stream.avail_in = uInt(inBuf.count)
        repeat {
            chunk.withUnsafeMutableBufferPointer { c in
                stream.next_out = c.baseAddress
                stream.avail_out = uInt(c.count)
                rc = inflate(&stream, Z_NO_FLUSH)
                out.append(contentsOf: c.prefix(c.count - Int(stream.avail_out)))
            }
        } while rc == Z_OK
    }
    guard rc == Z_STREAM_END else { throw DecodeError("inflate returned \(rc)") }
    guard stream.avail_in == 0 else { throw DecodeError("\(stream.avail_in) bytes after the gzip trailer") }
    return out
}

/// The `go` command, or an XCTSkip when Go is not installed.
func goTool() throws -> URL {
    var candidates = ["/usr/bin/go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    candidates += path.split(separator: ":").map { "\($0)/go" }
    for c in candidates where FileManager.default.isExecutableFile(atPath: c) {
        return URL(fileURLWithPath: c)
    }
    throw XCTSkip("go not installed: no go in \(candidates.joined(separator: ", "))")
}

func temporaryDirectory() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tricolor-pprof-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Runs `tool args` with HOME, GOCACHE, GOPATH and PPROF_TMPDIR inside `home`; returns
/// stdout and stderr together, and fails unless the exit status is 0.
func runTool(_ tool: URL, _ args: [String], home: URL) throws -> String {
    let p = Process()
    p.executableURL = tool
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    env["HOME"] = home.path
    env["GOCACHE"] = home.appendingPathComponent("gocache").path
    env["GOPATH"] = home.appendingPathComponent("gopath").path
    env["PPROF_TMPDIR"] = home.path
    env["PPROF_BINARY_PATH"] = home.path   // never look for the (made-up) binaries elsewhere
    p.environment = env
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0, "\(tool.path) \(args.joined(separator: " ")):\n\(output)")
    return output
}

// MARK: - A profile.proto reader, independent of the encoder

struct DecodeError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// One protobuf field. Varint fields keep their raw value; length-delimited ones their bytes.
enum ProtoValue {
    case varint(UInt64)
    case bytes(ArraySlice<UInt8>)
    case fixed(UInt64)
}

enum ProtoReader {
    static func varint(_ b: ArraySlice<UInt8>, _ i: inout Int) throws -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard i < b.endIndex else { throw DecodeError("truncated varint") }
            guard shift < 64 else { throw DecodeError("varint too long") }
            let byte = b[i]
            i += 1
            v |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return v }
            shift += 7
        }
    }

    static func fields(_ b: ArraySlice<UInt8>) throws -> [(field: Int, value: ProtoValue)] {
        var out: [(Int, ProtoValue)] = []
        var i = b.startIndex
        while i < b.endIndex {
            let key = try varint(b, &i)
            let field = Int(key >> 3)
            guard field > 0 else { throw DecodeError("field number 0") }
            switch key & 7 {
            case 0:
                out.append((field, .varint(try varint(b, &i))))
            case 2:
                let n = Int(try varint(b, &i))
                guard n <= b.endIndex - i else { throw DecodeError("truncated field \(field)") }
                out.append((field, .bytes(b[i..<i + n])))
                i += n
            case 1, 5:
                let n = key & 7 == 1 ? 8 : 4
                guard n <= b.endIndex - i else { throw DecodeError("truncated fixed field \(field)") }
                var v: UInt64 = 0
                for k in 0..<n { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
                out.append((field, .fixed(v)))
                i += n
            case let w:
                throw DecodeError("unsupported wire type \(w) for field \(field)")
            }
        }
        return out
    }

    /// Repeated integers: accepts both packed and one-per-field encodings.
    static func uints(_ v: ProtoValue) throws -> [UInt64] {
        switch v {
        case .varint(let x): return [x]
        case .bytes(let b):
            var i = b.startIndex
            var out: [UInt64] = []
            while i < b.endIndex { out.append(try varint(b, &i)) }
            return out
        case .fixed: throw DecodeError("fixed-width value where a varint was expected")
        }
    }

    static func uint(_ v: ProtoValue) throws -> UInt64 {
        guard case .varint(let x) = v else { throw DecodeError("expected a varint") }
        return x
    }

    static func int(_ v: ProtoValue) throws -> Int64 { Int64(bitPattern: try uint(v)) }

    static func message(_ v: ProtoValue) throws -> ArraySlice<UInt8> {
        guard case .bytes(let b) = v else { throw DecodeError("expected a length-delimited field") }
        return b
    }
}

struct DecodedValueType: Equatable { var type: String; var unit: String }
struct DecodedLabel: Equatable { var key: String; var str: String; var num: Int64; var numUnit: String }
struct DecodedSample { var locationIDs: [UInt64] = []; var values: [Int64] = []; var labels: [DecodedLabel] = [] }
struct DecodedMapping: Equatable {
    var id: UInt64 = 0, start: UInt64 = 0, limit: UInt64 = 0, offset: UInt64 = 0
    var file = "", buildID = ""
    var hasFunctions = false, hasFilenames = false, hasLineNumbers = false, hasInlineFrames = false
}
struct DecodedLine: Equatable { var functionID: UInt64 = 0; var line: Int64 = 0 }
struct DecodedLocation { var id: UInt64 = 0, mappingID: UInt64 = 0, address: UInt64 = 0; var lines: [DecodedLine] = []; var isFolded = false }
struct DecodedFunction { var id: UInt64 = 0; var name = "", systemName = "", filename = ""; var startLine: Int64 = 0 }

/// A Profile message decoded with string-table indices resolved to strings.
struct DecodedProfile {
    var stringTable: [String] = []
    var sampleTypes: [DecodedValueType] = []
    var samples: [DecodedSample] = []
    var mappings: [DecodedMapping] = []
    var locations: [DecodedLocation] = []
    var functions: [DecodedFunction] = []
    var dropFrames = "", keepFrames = ""
    var timeNanos: Int64 = 0, durationNanos: Int64 = 0
    var periodType: DecodedValueType?
    var period: Int64 = 0
    var comments: [String] = []
    var defaultSampleType = ""

    init(_ bytes: [UInt8]) throws {
        typealias R = ProtoReader
        let top = try R.fields(bytes[...])
        // The string table may come anywhere; read it first.
        for (f, v) in top where f == 6 {
            let b = try R.message(v)
            guard let s = String(validating: b, as: UTF8.self) else { throw DecodeError("string table entry is not UTF-8") }
            stringTable.append(s)
        }
        guard stringTable.first == "" else { throw DecodeError("string_table[0] must be \"\"") }
        let table = stringTable
        func str(_ v: ProtoValue) throws -> String {
            let i = try R.int(v)
            guard i >= 0 && i < table.count else { throw DecodeError("string index \(i) out of range") }
            return table[Int(i)]
        }
        func valueType(_ v: ProtoValue) throws -> DecodedValueType {
            var t = DecodedValueType(type: "", unit: "")
            for (f, x) in try R.fields(R.message(v)) {
                switch f {
                case 1: t.type = try str(x)
                case 2: t.unit = try str(x)
                default: throw DecodeError("ValueType field \(f)")
                }
            }
            return t
        }

        for (f, v) in top {
            switch f {
            case 1: sampleTypes.append(try valueType(v))
            case 2:
                var s = DecodedSample()
                for (sf, x) in try R.fields(R.message(v)) {
                    switch sf {
                    case 1: s.locationIDs += try R.uints(x)
                    case 2: s.values += try R.uints(x).map { Int64(bitPattern: $0) }
                    case 3:
                        var l = DecodedLabel(key: "", str: "", num: 0, numUnit: "")
                        for (lf, y) in try R.fields(R.message(x)) {
                            switch lf {
                            case 1: l.key = try str(y)
                            case 2: l.str = try str(y)
                            case 3: l.num = try R.int(y)
                            case 4: l.numUnit = try str(y)
                            default: throw DecodeError("Label field \(lf)")
                            }
                        }
                        s.labels.append(l)
                    default: throw DecodeError("Sample field \(sf)")
                    }
                }
                samples.append(s)
            case 3:
                var m = DecodedMapping()
                for (mf, x) in try R.fields(R.message(v)) {
                    switch mf {
                    case 1: m.id = try R.uint(x)
                    case 2: m.start = try R.uint(x)
                    case 3: m.limit = try R.uint(x)
                    case 4: m.offset = try R.uint(x)
                    case 5: m.file = try str(x)
                    case 6: m.buildID = try str(x)
                    case 7: m.hasFunctions = try R.uint(x) != 0
                    case 8: m.hasFilenames = try R.uint(x) != 0
                    case 9: m.hasLineNumbers = try R.uint(x) != 0
                    case 10: m.hasInlineFrames = try R.uint(x) != 0
                    default: throw DecodeError("Mapping field \(mf)")
                    }
                }
                mappings.append(m)
            case 4:
                var l = DecodedLocation()
                for (lf, x) in try R.fields(R.message(v)) {
                    switch lf {
                    case 1: l.id = try R.uint(x)
                    case 2: l.mappingID = try R.uint(x)
                    case 3: l.address = try R.uint(x)
                    case 4:
                        var line = DecodedLine()
                        for (nf, y) in try R.fields(R.message(x)) {
                            switch nf {
                            case 1: line.functionID = try R.uint(y)
                            case 2: line.line = try R.int(y)
                            default: throw DecodeError("Line field \(nf)")
                            }
                        }
                        l.lines.append(line)
                    case 5: l.isFolded = try R.uint(x) != 0
                    default: throw DecodeError("Location field \(lf)")
                    }
                }
                locations.append(l)
            case 5:
                var fn = DecodedFunction()
                for (ff, x) in try R.fields(R.message(v)) {
                    switch ff {
                    case 1: fn.id = try R.uint(x)
                    case 2: fn.name = try str(x)
                    case 3: fn.systemName = try str(x)
                    case 4: fn.filename = try str(x)
                    case 5: fn.startLine = try R.int(x)
                    default: throw DecodeError("Function field \(ff)")
                    }
                }
                functions.append(fn)
            case 6: break
            case 7: dropFrames = try str(v)
            case 8: keepFrames = try str(v)
            case 9: timeNanos = try R.int(v)
            case 10: durationNanos = try R.int(v)
            case 11: periodType = try valueType(v)
            case 12: period = try R.int(v)
            case 13: comments += try R.uints(v).map { try str(.varint($0)) }
            case 14: defaultSampleType = try str(v)
            default: throw DecodeError("Profile field \(f)")
            }
        }
        // Referential integrity, as profile.proto requires.
        for l in locations where l.mappingID != 0 {
            guard mappings.contains(where: { $0.id == l.mappingID }) else { throw DecodeError("location \(l.id): no mapping \(l.mappingID)") }
        }
        for s in samples {
            guard s.values.count == sampleTypes.count else { throw DecodeError("sample has \(s.values.count) values") }
        }
    }

    /// The function names along a sample's stack, innermost first, inline frames expanded.
    func functionNames(_ s: DecodedSample) throws -> [String] {
        try s.locationIDs.flatMap { id -> [String] in
            guard let loc = locations.first(where: { $0.id == id }) else { throw DecodeError("no location \(id)") }
            return try loc.lines.map { line in
                guard let f = functions.first(where: { $0.id == line.functionID }) else { throw DecodeError("no function \(line.functionID)") }
                return f.name
            }
        }
    }
}
