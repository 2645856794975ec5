// Types shared by the profilers (heap and mutex profiles), the symbolizer and the pprof
// encoder. A profile stack is an array of program counters, innermost first; a program
// counter symbolizes to one or more frames (more than one when calls were inlined).

/// One symbolized frame of a stack: a demangled function name and, where known, the
/// source file and line (empty and 0 when unknown).
public struct ProfileFrame: Hashable, Sendable {
    /// The demangled function name, or the address in hex (`"0x4f2a10"`) when no symbol
    /// covers it.
    public var function: String
    /// The source file's path from the DWARF line table; empty when unknown.
    public var file: String
    /// The source line; 0 when unknown.
    public var line: Int

    /// A frame of `function`, at `file`:`line` when known.
    public init(function: String, file: String = "", line: Int = 0) {
        self.function = function
        self.file = file
        self.line = line
    }
}

/// A loaded image (the executable or a shared library) as pprof's `Mapping` describes
/// it: the address range it occupies, the file offset of `start`, its path and build ID.
public struct ProfileMapping: Hashable, Sendable {
    /// The image's load address.
    public var start: UInt64
    /// The address just past the image's text.
    public var limit: UInt64
    /// The file offset that `start` was mapped from.
    public var offset: UInt64
    /// The image's path.
    public var file: String
    /// The image's GNU build ID in lowercase hex (empty when it has none); pprof matches
    /// binaries by it.
    public var buildID: String

    /// A mapping of `file` over `start ..< limit`, mapped from file offset `offset`.
    public init(start: UInt64, limit: UInt64, offset: UInt64, file: String, buildID: String) {
        self.start = start
        self.limit = limit
        self.offset = offset
        self.file = file
        self.buildID = buildID
    }
}
