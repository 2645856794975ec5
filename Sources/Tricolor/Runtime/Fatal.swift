import CTricolor
import Glibc
import Runtime

// The one way the runtime stops the process (Go's throw/fatal in panic.go).
//
// Every fatal condition goes through `runtimeFatal`: out of memory, checked-mode misuse,
// a failed invariant (`runtimeCheck`), a lock-rank violation. It prints, as Go does,
//
//     fatal error: <message>
//
//     thread <tid> [<name>]:
//     <the failing thread's stack, symbolized, innermost first>
//
// on stderr, then ends the process with exit status 2 (Go's status for a fatal error).
// Function names by default; `GOTRACEBACK=all` (or `system`, `2`) adds source lines,
// which costs about a second of reading DWARF. Go's `single` (the default) and `1`
// print the one thread, which is all a thread-based runtime has to print.
// With `GOTRACEBACK=crash` it raises SIGABRT instead, as Go does, so that the Swift
// backtracer (`SWIFT_BACKTRACE=enable=yes`) or the kernel's core dump takes over with
// the thread's registers and memory intact. `GOTRACEBACK=none` prints the message only.
//
// With `GODEBUG=tricolordump=PREFIX` it then writes a text report and a heap dump of
// every live heap (Observability/FatalDump.swift) before ending the process.
//
// The message is built only on the failing path: callers pass an autoclosure.
// A second fatal error while the first is being reported (say, the symbolizer faults)
// ends the process at once with the first message already on stderr.

/// Go's GOTRACEBACK levels that change what a fatal error does.
enum TracebackLevel: Comparable {
    case none, single, detailed, crash

    /// Read once, on the first fatal error (the environment cannot change under us
    /// in a way that matters for a process that is ending).
    static var current: TracebackLevel {
        guard let v = getenv("GOTRACEBACK").map({ String(cString: $0) }) else { return .single }
        switch v {
        case "none", "0": return .none
        case "crash": return .crash
        case "all", "system", "2": return .detailed   // with source lines (slower: ~1 s of DWARF)
        default: return .single   // single, 1: one thread's stack, function names
        }
    }
}

/// Set by the first thread that reports a fatal error; a second one (on any thread)
/// waits for the first to end the process, or ends it itself if it is the same thread.
nonisolated(unsafe) private let fatalInProgress: UnsafeMutablePointer<UInt> = {
    let p = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
    p.initialize(to: 0)
    return p
}()

/// Report a fatal error and end the process (never returns). See the top of this file.
@_spi(Testing) public func runtimeFatal(_ message: String) -> Never {
    let me = UInt(tc_thread_id())
    if !tc_cas(fatalInProgress, 0, me) {
        if tc_load_acquire(fatalInProgress) == me {
            writeStderr("fatal error: \(message) (while reporting a fatal error)\n")
            _exit(2)
        }
        // Another thread is reporting: let it finish and end the process.
        while true { pause() }
    }
    writeStderr("fatal error: \(message)\n")
    let level = TracebackLevel.current
    let dumpPrefix = fatalDumpPrefix()
    var stack = ""
    if level != .none || dumpPrefix != nil {
        stack = threadHeader() + "\n" + symbolizedStack(sourceLines: level >= .detailed) + "\n"
    }
    if level != .none { writeStderr("\n" + stack) }
    // GODEBUG=tricolordump=PREFIX: the report and heap dumps (Observability/FatalDump.swift).
    if let dumpPrefix { writeFatalDumps(prefix: dumpPrefix, message: message, stack: stack) }
    if level == .crash {
        // Whoever handles SIGABRT takes over: the Swift backtracer, a fuzzer's crash
        // handler, or the kernel's core dump.
        abort()
    }
    _exit(2)
}

/// An invariant: traps through `runtimeFatal` when `condition` is false. The message is
/// built only then. Use for states that mean the runtime itself is broken.
@inlinable @inline(__always)
func runtimeCheck(_ condition: Bool, _ message: @autoclosure () -> String = "",
                  file: StaticString = #fileID, line: UInt = #line) {
    if _slowPath(!condition) { invariantFailed(message(), file: file, line: line) }
}

@usableFromInline @inline(never)
func invariantFailed(_ message: String, file: StaticString, line: UInt) -> Never {
    runtimeFatal("invariant violated at \(file):\(line)\(message.isEmpty ? "" : ": " + message)")
}

func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { buf in
        var off = 0
        while off < buf.count {
            let n = write(2, buf.baseAddress! + off, buf.count - off)
            if n > 0 { off += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}

private func threadHeader() -> String {
    // The kernel's thread name (what tc_set_thread_name and ps show).
    var name = ""
    let fd = open("/proc/thread-self/comm", O_RDONLY)
    if fd >= 0 {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buf, buf.count)
        close(fd)
        if n > 0 { name = String(decoding: buf[0..<n], as: UTF8.self).trimmingSuffixNewline() }
    }
    return "thread \(tc_thread_id())\(name.isEmpty ? "" : " [\(name)]"):"
}

/// The calling thread's stack, symbolized with function names and source lines where
/// the toolchain's backtracing library can find them. Frames of this file are dropped,
/// and the innermost frames whose names contain one of `dropping`.
func symbolizedStack(sourceLines: Bool, dropping: [String] = []) -> String {
    guard let trace = try? Backtrace.capture(limit: 64),
          let sym = trace.symbolicated(options: sourceLines ? [.showSourceLocations, .showInlineFrames] : [])
    else { return "(no stack: the backtracer could not capture it)" }
    var lines: [String] = []
    var skipping = true
    for frame in sym.frames {
        let name = frame.symbol?.name ?? "???"
        if skipping && (name.contains("runtimeFatal") || name.contains("symbolizedStack")
                        || name.contains("invariantFailed") || name.contains("Backtrace")
                        || dropping.contains(where: { name.contains($0) })) { continue }
        skipping = false
        var line = "  \(name)"
        if let loc = frame.symbol?.sourceLocation {
            line += "\n      \(loc.path):\(loc.line)"
        }
        lines.append(line)
    }
    return lines.joined(separator: "\n")
}

private extension String {
    func trimmingSuffixNewline() -> String { hasSuffix("\n") ? String(dropLast()) : self }
}
