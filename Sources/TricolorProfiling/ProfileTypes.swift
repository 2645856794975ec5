// Types shared by the profilers (heap and mutex profiles), the symbolizer and the pprof
// encoder. A profile stack is an array of program counters, innermost first; a program
// counter symbolizes to one or more frames (more than one when calls were inlined).

/// One symbolized frame of a stack: a demangled function name and, where known, the
/// source file and line (empty and 0 when unknown).
public struct ProfileFrame: Hashable, Sendable {
    public var function: String
    public var file: String
    public var line: Int

    public init(function: String, file: String = "", line: Int = 0) {
        self.function = function
        self.file = file
        self.line = line
    }
}

/// A loaded image (the executable or a shared library) as pprof's `Mapping` describes
/// it: the address range it occupies, the file offset of `start`, its path and build ID.
public struct ProfileMapping: Hashable, Sendable {
    public var start: UInt64
    public var limit: UInt64
    public var offset: UInt64
    public var file: String
    public var buildID: String

    public init(start: UInt64, limit: UInt64, offset: UInt64, file: String, buildID: String) {
        self.start = start
        self.limit = limit
        self.offset = offset
        self.file = file
        self.buildID = buildID
    }
}
