// pprof encoder: builds a profile.proto message (github.com/google/pprof, proto/profile.proto)
// from stacks of program counters, and gzips it with zlib. The heap and mutex profilers
// feed it; see ProfileTypes.swift for the frame and mapping types.
//
// Output is deterministic: string-table entries, functions and locations get their indices in
// the order they are first seen (sample types, period type and default sample type first,
// then mappings and samples in the order they were added). Dictionaries are only looked up,
// never iterated.

import Tricolor
import CZlib

// MARK: - Protobuf writer

/// Protobuf wire types used by profile.proto (no fixed-width fields occur in it).
enum ProtoWireType: UInt64 {
    case varint = 0
    case lengthDelimited = 2
}

/// A minimal protobuf writer: varints, length-delimited fields (strings, nested messages)
/// and packed repeated integers. The `…Opt` methods skip a field whose value is the proto3
/// default (0, false), as protoc-generated writers do.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: ProtoWireType) {
        varint(UInt64(field) << 3 | wireType.rawValue)
    }

    mutating func uint64(_ field: Int, _ v: UInt64) {
        key(field, .varint)
        varint(v)
    }

    mutating func uint64Opt(_ field: Int, _ v: UInt64) {
        if v != 0 { uint64(field, v) }
    }

    /// int64 (not sint64): negative values are written as their 10-byte two's complement.
    mutating func int64(_ field: Int, _ v: Int64) {
        uint64(field, UInt64(bitPattern: v))
    }

    mutating func int64Opt(_ field: Int, _ v: Int64) {
        if v != 0 { int64(field, v) }
    }

    mutating func boolOpt(_ field: Int, _ v: Bool) {
        if v { uint64(field, 1) }
    }

    mutating func bytesField(_ field: Int, _ b: some Collection<UInt8>) {
        key(field, .lengthDelimited)
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    mutating func string(_ field: Int, _ s: String) {
        bytesField(field, s.utf8)
    }

    /// Packed repeated uint64; nothing is written for an empty array.
    mutating func packedUInt64(_ field: Int, _ values: [UInt64]) {
        if values.isEmpty { return }
        var body = ProtoWriter()
        for v in values { body.varint(v) }
        bytesField(field, body.bytes)
    }

    /// Packed repeated int64; nothing is written for an empty array.
    mutating func packedInt64(_ field: Int, _ values: [Int64]) {
        packedUInt64(field, values.map { UInt64(bitPattern: $0) })
    }

    /// A nested message: `body` writes its fields, which are then framed with their length.
    mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        var nested = ProtoWriter()
        body(&nested)
        bytesField(field, nested.bytes)
    }
}

// MARK: - Profile builder

/// Field numbers from profile.proto.
private enum PB {
    enum Profile {
        static let sampleType = 1, sample = 2, mapping = 3, location = 4, function = 5
        static let stringTable = 6, timeNanos = 9, durationNanos = 10, periodType = 11
        static let period = 12, defaultSampleType = 14
    }
    enum ValueType { static let type = 1, unit = 2 }
    enum Sample { static let locationID = 1, value = 2, label = 3 }
    enum Label { static let key = 1, str = 2, num = 3, numUnit = 4 }
    enum Mapping {
        static let id = 1, memoryStart = 2, memoryLimit = 3, fileOffset = 4, filename = 5
        static let buildID = 6, hasFunctions = 7, hasFilenames = 8, hasLineNumbers = 9
        static let hasInlineFrames = 10
    }
    enum Location { static let id = 1, mappingID = 2, address = 3, line = 4 }
    enum Line { static let functionID = 1, line = 2 }
    enum Function { static let id = 1, name = 2, systemName = 3, filename = 4 }   // systemName: unused
}

/// profile.proto's `string_table`: entry 0 is "", and each distinct string gets the next index
/// the first time it is interned. Invariant: `index[entries[i]] == i` for every i.
private struct StringTable {
    private(set) var entries: [String] = [""]
    private(set) var index: [String: Int64] = ["": 0]

    mutating func intern(_ s: String) -> Int64 {
        if let i = index[s] { return i }
        let i = Int64(entries.count)
        entries.append(s)
        index[s] = i
        return i
    }
}

/// Collects samples, symbolizes each distinct program counter once, and encodes the result
/// as an uncompressed profile.proto message (`encode()`; gzip it with `gzipCompress` before
/// writing a `.pb.gz` file).
///
/// Ids: mappings, locations and functions are numbered 1, 2, … in the order they are added
/// or first seen. A location is one distinct PC; its `mapping_id` is the first added mapping
/// with `start <= pc < limit` (omitted if none), resolved at `encode()` so mappings may be
/// added before or after the samples. Functions are deduplicated by (name, file) and carry
/// `name` and `filename` only (see `encode()` for why not `system_name`). Every mapping is
/// marked `has_functions` (we symbolize in-process, so pprof must not try again), plus
/// `has_filenames` / `has_line_numbers` / `has_inline_frames` when some location in it has
/// a file, a line, or more than one frame.
struct PprofBuilder {
    /// Profile start, Unix nanoseconds (profile.proto `time_nanos`; 0 = omitted).
    var timeNanos: Int64 = 0
    /// Profile duration in nanoseconds (`duration_nanos`; 0 = omitted).
    var durationNanos: Int64 = 0

    private let sampleTypes: [(type: Int64, unit: Int64)]   // string indices
    private let periodType: (type: Int64, unit: Int64)
    private let period: Int64
    private let defaultSampleType: Int64                    // 0 = unset
    private let symbolize: (UInt) -> [ProfileFrame]

    /// The string table; every string the encoding refers to is interned before `encode()`.
    private var strings: StringTable

    private var mappings: [ProfileMapping] = []

    private struct Line { var functionID: UInt64; var line: Int64 }
    private struct Location { var pc: UInt; var lines: [Line] }
    /// Location id i+1 is `locations[i]`. Invariant: `locationIndex[locations[i].pc] == i + 1`.
    private var locations: [Location] = []
    private var locationIndex: [UInt: UInt64] = [:]

    private struct FunctionKey: Hashable { var name: String; var file: String }
    private struct Function { var name: Int64; var file: Int64 }   // string indices
    /// Function id i+1 is `functions[i]`, keyed by (name, file) in `functionIndex`.
    private var functions: [Function] = []
    private var functionIndex: [FunctionKey: UInt64] = [:]

    private struct Label { var key: Int64; var num: Int64; var unit: Int64 }
    private struct Sample { var locationIDs: [UInt64]; var values: [Int64]; var labels: [Label] }
    private var samples: [Sample] = []

    /// - Parameters:
    ///   - sampleTypes: what each sample value means, e.g. `("alloc_space", "bytes")`.
    ///   - periodType, period: the kind of event between samples and how many of them.
    ///   - defaultSampleType: the `type` of the sample value pprof shows by default
    ///     (nil: unset, and pprof uses the last one).
    ///   - symbolize: frames for a PC, innermost first (more than one when calls were
    ///     inlined); called once per distinct PC, from `addSample`.
    init(sampleTypes: [(type: String, unit: String)], periodType: (type: String, unit: String), period: Int64,
         defaultSampleType: String? = nil, symbolize: @escaping (UInt) -> [ProfileFrame]) {
        var strings = StringTable()
        self.sampleTypes = sampleTypes.map { (strings.intern($0.type), strings.intern($0.unit)) }
        self.periodType = (strings.intern(periodType.type), strings.intern(periodType.unit))
        self.defaultSampleType = defaultSampleType.map { strings.intern($0) } ?? 0
        self.strings = strings
        self.period = period
        self.symbolize = symbolize
    }

    /// Adds a loaded image; its id is the number of mappings added so far. Add the main
    /// executable first (pprof treats mapping 1 as the main binary).
    mutating func addMapping(_ m: ProfileMapping) {
        _ = intern(m.file)
        _ = intern(m.buildID)
        mappings.append(m)
    }

    /// Adds one sample.
    /// - Parameters:
    ///   - stack: program counters, innermost first, ready to show (the caller has already
    ///     turned return addresses into call-site addresses, e.g. `ra - 1`).
    ///   - values: one per sample type, in the same order.
    ///   - numLabels: numeric labels, e.g. `("bytes", 48, nil)` for a heap block size.
    /// - Precondition: `values.count` equals the number of sample types.
    mutating func addSample(stack: [UInt], values: [Int64], numLabels: [(key: String, value: Int64, unit: String?)] = []) {
        precondition(values.count == sampleTypes.count, "pprof: sample has \(values.count) values for \(sampleTypes.count) sample types")
        let ids = stack.map { locationID($0) }
        let labels = numLabels.map { Label(key: intern($0.key), num: $0.value, unit: $0.unit.map { intern($0) } ?? 0) }
        samples.append(Sample(locationIDs: ids, values: values, labels: labels))
    }

    /// The uncompressed profile.proto bytes.
    func encode() -> [UInt8] {
        var w = ProtoWriter()
        for t in sampleTypes {
            w.message(PB.Profile.sampleType) { valueType(&$0, t) }
        }
        for s in samples {
            w.message(PB.Profile.sample) { m in
                m.packedUInt64(PB.Sample.locationID, s.locationIDs)
                m.packedInt64(PB.Sample.value, s.values)
                for l in s.labels {
                    m.message(PB.Sample.label) { lm in
                        lm.int64Opt(PB.Label.key, l.key)
                        lm.int64Opt(PB.Label.num, l.num)
                        lm.int64Opt(PB.Label.numUnit, l.unit)
                    }
                }
            }
        }

        // Which mapping each location falls in, and what its symbols tell about the mapping.
        // A linear scan per location: there is one mapping per loaded image, a few dozen at most.
        var hasFiles = [Bool](repeating: false, count: mappings.count)
        var hasLines = hasFiles
        var hasInline = hasFiles
        let locationMapping: [Int?] = locations.map { loc in
            guard let mi = mappings.firstIndex(where: { UInt64(loc.pc) >= $0.start && UInt64(loc.pc) < $0.limit })
            else { return nil }
            if loc.lines.contains(where: { functions[Int($0.functionID) - 1].file != 0 }) { hasFiles[mi] = true }
            if loc.lines.contains(where: { $0.line != 0 }) { hasLines[mi] = true }
            if loc.lines.count > 1 { hasInline[mi] = true }
            return mi
        }

        for (i, m) in mappings.enumerated() {
            w.message(PB.Profile.mapping) { mm in
                mm.uint64Opt(PB.Mapping.id, UInt64(i + 1))
                mm.uint64Opt(PB.Mapping.memoryStart, m.start)
                mm.uint64Opt(PB.Mapping.memoryLimit, m.limit)
                mm.uint64Opt(PB.Mapping.fileOffset, m.offset)
                mm.int64Opt(PB.Mapping.filename, strings.index[m.file]!)
                mm.int64Opt(PB.Mapping.buildID, strings.index[m.buildID]!)
                mm.boolOpt(PB.Mapping.hasFunctions, true)
                mm.boolOpt(PB.Mapping.hasFilenames, hasFiles[i])
                mm.boolOpt(PB.Mapping.hasLineNumbers, hasLines[i])
                mm.boolOpt(PB.Mapping.hasInlineFrames, hasInline[i])
            }
        }
        for (i, loc) in locations.enumerated() {
            w.message(PB.Profile.location) { lm in
                lm.uint64Opt(PB.Location.id, UInt64(i + 1))
                lm.uint64Opt(PB.Location.mappingID, locationMapping[i].map { UInt64($0 + 1) } ?? 0)
                lm.uint64Opt(PB.Location.address, UInt64(loc.pc))
                for line in loc.lines {
                    lm.message(PB.Location.line) { l in
                        l.uint64Opt(PB.Line.functionID, line.functionID)
                        l.int64Opt(PB.Line.line, line.line)
                    }
                }
            }
        }
        for (i, f) in functions.enumerated() {
            w.message(PB.Profile.function) { fm in
                fm.uint64Opt(PB.Function.id, UInt64(i + 1))
                fm.int64Opt(PB.Function.name, f.name)
                // No system_name: pprof treats a function whose system_name equals its name as
                // not yet demangled and, when the name contains any of `<>[]` (Swift's `->`,
                // generics, arrays), strips everything in parentheses and angle brackets
                // ("f(Swift.Int) -> ()" shows as "f -> "). A differing or empty system_name
                // marks the name as final. Write the mangled symbol here once frames carry it.
                fm.int64Opt(PB.Function.filename, f.file)
            }
        }
        for s in strings.entries {
            w.string(PB.Profile.stringTable, s)   // every entry, "" included: indices are positions
        }
        w.int64Opt(PB.Profile.timeNanos, timeNanos)
        w.int64Opt(PB.Profile.durationNanos, durationNanos)
        w.message(PB.Profile.periodType) { valueType(&$0, periodType) }
        w.int64Opt(PB.Profile.period, period)
        w.int64Opt(PB.Profile.defaultSampleType, defaultSampleType)
        return w.bytes
    }

    private func valueType(_ w: inout ProtoWriter, _ t: (type: Int64, unit: Int64)) {
        w.int64Opt(PB.ValueType.type, t.type)
        w.int64Opt(PB.ValueType.unit, t.unit)
    }

    private mutating func intern(_ s: String) -> Int64 {
        strings.intern(s)
    }

    /// The location id for `pc`, symbolizing it on first sight.
    private mutating func locationID(_ pc: UInt) -> UInt64 {
        if let id = locationIndex[pc] { return id }
        var frames = symbolize(pc)
        if frames.isEmpty {
            frames = [ProfileFrame(function: "0x" + String(pc, radix: 16))]
        }
        let lines = frames.map { Line(functionID: functionID($0), line: Int64($0.line)) }
        locations.append(Location(pc: pc, lines: lines))
        let id = UInt64(locations.count)
        locationIndex[pc] = id
        return id
    }

    private mutating func functionID(_ f: ProfileFrame) -> UInt64 {
        let key = FunctionKey(name: f.function, file: f.file)
        if let id = functionIndex[key] { return id }
        functions.append(Function(name: intern(f.function), file: intern(f.file)))
        let id = UInt64(functions.count)
        functionIndex[key] = id
        return id
    }
}

// MARK: - gzip

/// `bytes` compressed in gzip format (RFC 1952) at zlib's default level, as pprof expects
/// of a `.pb.gz` file.
/// - Precondition: `bytes.count` fits in 32 bits (zlib's `avail_in`).
func gzipCompress(_ bytes: [UInt8]) -> [UInt8] {
    precondition(bytes.count <= Int(UInt32.max), "gzip: input larger than 4 GiB")
    var stream = z_stream()
    var rc = tricolor_deflateInitGzip(&stream)
    precondition(rc == Z_OK, "gzip: deflateInit2 failed (\(rc))")
    defer { deflateEnd(&stream) }

    // deflateBound covers the gzip header and trailer once the stream is initialised, so a
    // single Z_FINISH call normally finishes; the loop only guards against zlib needing more.
    var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(bytes.count))))
    var produced = 0
    var input = bytes
    input.withUnsafeMutableBufferPointer { inBuf in
        stream.next_in = inBuf.baseAddress
        stream.avail_in = uInt(inBuf.count)
        repeat {
            if produced == out.count { out += [UInt8](repeating: 0, count: max(out.count, 64)) }
            out.withUnsafeMutableBufferPointer { outBuf in
                stream.next_out = outBuf.baseAddress! + produced
                stream.avail_out = uInt(outBuf.count - produced)
                rc = deflate(&stream, Z_FINISH)
                produced = outBuf.count - Int(stream.avail_out)
            }
            precondition(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR, "gzip: deflate failed (\(rc))")
        } while rc != Z_STREAM_END
    }
    out.removeSubrange(produced...)
    return out
}
