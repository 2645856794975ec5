// Output files named on the command line (--heap-profile, --mutex-profile, --heap-dump). See
// OutputFile for the rules; ExitStatus for what the process returns when they fail.

// @preconcurrency: Swift 6 refuses to read C's `stdout` (a mutable global to it); the
// stream is set up before main and never reassigned.
@preconcurrency import Glibc
@_spi(Tools) import Tricolor

/// Exit statuses of `tricolor` (sysexits.h values). The README lists them.
enum ExitStatus {
    /// EX_USAGE: a bad command line (an option value out of range, an unknown option).
    /// ArgumentParser's own status for the errors it reports with a usage line.
    static let usage: Int32 = 64
    /// EX_CANTCREAT: an output file cannot be opened. Reported before the workload runs.
    static let cannotCreate: Int32 = 73
    /// EX_IOERR: writing, closing or renaming an output file (or flushing standard
    /// output) failed after the workload ran.
    static let ioError: Int32 = 74
    /// EX_CONFIG: a malformed GOGC, GOMEMLIMIT, GOMAXPROCS or GODEBUG value.
    static let config: Int32 = 78
    /// Anything else that stops a run (the heap cannot be created, a workload fails): 1.
    static let failure: Int32 = 1

    /// The table for `--help` (the README has the same one). A runtime fatal error exits
    /// with 2, the status of Go's `throw`; that one is the runtime's (runtimeFatal), not
    /// the command's.
    static let helpText = """
        Exit status: 0 success; 1 any other failure (the heap cannot be created, the \
        workload fails); 2 a runtime fatal error ('fatal error: …' and the stack on \
        stderr); 64 invalid command line; 73 an output file cannot be opened (before the \
        run); 74 writing an output file or standard output failed; 78 invalid GOGC, \
        GOMEMLIMIT, GOMAXPROCS or GODEBUG.
        """
}

/// Writes `tricolor: <message>` and a newline on stderr, unbuffered.
func reportError(_ message: String) {
    var line = Array("tricolor: \(message)\n".utf8)
    _ = OutputFile.writeAll(STDERR_FILENO, &line)
}

/// Flushes standard output and reports, on stderr, whether any of it was lost: a failed
/// flush now, or an earlier one (glibc drops the buffer of a failed automatic flush and
/// only sets the stream's error flag). False after reporting.
func standardOutputIsWritten() -> Bool {
    let flushFailed = fflush(stdout) != 0
    let code = errno
    if !flushFailed && ferror(stdout) == 0 { return true }
    reportError("cannot write standard output: \(flushFailed ? errnoText(code) : "an earlier write failed")")
    return false
}

/// Flushes standard output without reporting: a failure stays in the stream's error
/// flag, which `standardOutputIsWritten()` checks at the end of the command.
func flushStandardOutput() { _ = fflush(stdout) }

/// The text of `errno` value `code`.
func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// An output file opened before the workload runs, so that a path that cannot be written
/// fails at once, not after minutes of work.
///
/// A path is treated as a shell redirect (`> path`) treats it: symlinks are followed
/// (the target is written and the link stays a link), a missing file is created with mode
/// 0666 less the umask, an existing one keeps its mode and owner. Unlike a redirect, only
/// a regular file is accepted: a FIFO, device, directory or socket is refused (open with
/// O_NONBLOCK, so a FIFO without a reader fails with ENXIO instead of hanging, then
/// fstat). Standard output is written only when asked for by name, as `-`.
///
/// An existing file is truncated only when the data is written, so a run that fails (or
/// another output that cannot be opened) leaves it as it was; a file this run created is
/// removed again by `abandon()`.
///
/// With `atomic`, the data goes to a temporary file beside the target (after following
/// its symlinks), which is fsynced and renamed over it: readers see the old file or the
/// new one, never a partial one. Off by default (a plain write is what a redirect does).
final class OutputFile {
    private enum Target {
        case standardOutput
        /// Written in place; `created` when this run made the file.
        case inPlace(created: Bool)
        /// Written to `temporary`, renamed over `final` with `mode`.
        case atomic(temporary: String, final: String, mode: mode_t)
    }

    /// The option that named the file, for messages ("--heap-profile").
    let option: String
    /// The path as given.
    let path: String
    private var fd: Int32
    private let target: Target
    /// What the path names, to catch two options writing the same file.
    let identity: String

    private init(option: String, path: String, fd: Int32, target: Target, identity: String) {
        self.option = option
        self.path = path
        self.fd = fd
        self.target = target
        self.identity = identity
    }

    deinit { if fd >= 0 && fd != STDOUT_FILENO { close(fd) } }

    /// Whether the data goes to standard output (so text output must go elsewhere).
    var isStandardOutput: Bool { if case .standardOutput = target { return true } else { return false } }

    /// Opens `path` for `option`; the error's message names the option, the path and the
    /// reason (strerror text, or the kind of file refused).
    static func open(option: String, path: String, atomic: Bool) throws(OutputError) -> OutputFile {
        if path == "-" {
            return OutputFile(option: option, path: path, fd: STDOUT_FILENO, target: .standardOutput, identity: "-")
        }
        if path.isEmpty { throw OutputError("\(option): empty path (use '-' for standard output)") }
        return atomic ? try openAtomic(option: option, path: path) : try openInPlace(option: option, path: path)
    }

    private static func openInPlace(option: String, path: String) throws(OutputError) -> OutputFile {
        let flags = O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY
        var created = true
        var fd = Glibc.open(path, flags | O_CREAT | O_EXCL, 0o666)
        if fd < 0 && errno == EEXIST {
            // Exists (or is a dangling symlink, which O_CREAT then creates through, as a
            // redirect would).
            created = false
            fd = Glibc.open(path, flags | O_CREAT, 0o666)
        }
        if fd < 0 {
            let e = errno
            // ENXIO: a FIFO with no reader (or a socket). Name the kind, not "no such device".
            if e == ENXIO || e == EISDIR, let kind = kindOfNonRegularFile(path) {
                throw OutputError("\(option): cannot write '\(path)': \(kind), not a regular file")
            }
            throw OutputError("\(option): cannot open '\(path)' for writing: \(errnoText(e))")
        }
        var st = stat()
        if fstat(fd, &st) != 0 {
            let e = errno
            close(fd)
            throw OutputError("\(option): cannot open '\(path)' for writing: \(errnoText(e))")
        }
        if st.st_mode & S_IFMT != S_IFREG {
            close(fd)
            throw OutputError("\(option): cannot write '\(path)': \(kindName(st.st_mode)), not a regular file")
        }
        // Regular files ignore O_NONBLOCK; clear it anyway so the descriptor is ordinary.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return OutputFile(option: option, path: path, fd: fd, target: .inPlace(created: created),
                          identity: "inode \(st.st_dev):\(st.st_ino)")
    }

    private static func openAtomic(option: String, path: String) throws(OutputError) -> OutputFile {
        let final: String
        switch FilePaths.followingFinalSymlinks(path) {
        case .success(let p): final = p
        case .failure(let e): throw OutputError("\(option): cannot open '\(path)' for writing: \(errnoText(e.code))")
        }
        var st = stat()
        var mode: mode_t
        var identity = "path \(final)"
        if stat(final, &st) == 0 {
            if st.st_mode & S_IFMT != S_IFREG {
                throw OutputError("\(option): cannot write '\(path)': \(kindName(st.st_mode)), not a regular file")
            }
            // Replacing needs only the directory's permission; insist on the file's too,
            // as writing it in place would.
            if access(final, W_OK) != 0 {
                throw OutputError("\(option): cannot open '\(path)' for writing: \(errnoText(errno))")
            }
            mode = st.st_mode & 0o7777
            identity = "inode \(st.st_dev):\(st.st_ino)"
        } else if errno == ENOENT {
            let mask = umask(0o022)      // read the umask (single-threaded here: before the run)
            umask(mask)
            mode = 0o666 & ~mask
        } else {
            throw OutputError("\(option): cannot open '\(path)' for writing: \(errnoText(errno))")
        }
        let (dir, base) = FilePaths.split(final)
        var template = Array("\(dir)/.\(base).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd < 0 {
            throw OutputError("\(option): cannot create a temporary file in '\(dir)' for '\(path)': \(errnoText(errno))")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return OutputFile(option: option, path: path, fd: fd,
                          target: .atomic(temporary: temporary, final: final, mode: mode), identity: identity)
    }

    /// Writes `bytes` as the whole content and closes the file (for standard output: only
    /// writes). Every write, the truncation, the fsync (atomic), close and rename are checked.
    func write(_ bytes: [UInt8]) throws(OutputError) {
        var data = bytes
        try write { fd in
            if let e = OutputFile.writeAll(fd, &data) { throw Errno(code: e) }
        }
    }

    /// Writes the whole content with `body`, which writes to the descriptor it is given
    /// (blocking; left open) and throws on failure, then finishes as `write(_:)` does.
    /// A failure of `body` is reported with its description (`Errno`: the strerror text).
    func write(with body: (Int32) throws -> Void) throws(OutputError) {
        precondition(fd >= 0, "OutputFile written twice")
        let place = isStandardOutput ? "standard output" : "'\(path)'"
        defer { if fd != STDOUT_FILENO { fd = -1 } }
        func reason(_ error: any Error) -> String {
            if let e = error as? Errno { return errnoText(e.code) }
            return "\(error)"
        }
        var failure: String? = nil
        switch target {
        case .standardOutput:
            do { try body(fd) } catch { failure = reason(error) }
        case .inPlace(let created):
            if ftruncate(fd, 0) != 0 { failure = errnoText(errno) }
            if failure == nil { do { try body(fd) } catch { failure = reason(error) } }
            // close's EINTR on Linux still releases the descriptor; the data was handed over.
            if close(fd) != 0 && failure == nil && errno != EINTR { failure = errnoText(errno) }
            if failure != nil && created { unlink(path) }      // no partial file where there was none
        case .atomic(let temporary, let final, let mode):
            do { try body(fd) } catch { failure = reason(error) }
            if failure == nil && fchmod(fd, mode) != 0 { failure = errnoText(errno) }
            if failure == nil && fsync(fd) != 0 { failure = errnoText(errno) }
            if close(fd) != 0 && failure == nil && errno != EINTR { failure = errnoText(errno) }
            if failure == nil && rename(temporary, final) != 0 { failure = errnoText(errno) }
            if failure != nil { unlink(temporary) }
        }
        if let failure { throw OutputError("\(option): cannot write \(place): \(failure)") }
    }

    /// Gives up without writing: closes the file and removes what `open` created (a new
    /// file, a temporary). An existing file is left untouched.
    func abandon() {
        guard fd >= 0, fd != STDOUT_FILENO else { return }
        close(fd)
        fd = -1
        switch target {
        case .standardOutput: break
        case .inPlace(let created): if created { unlink(path) }
        case .atomic(let temporary, _, _): unlink(temporary)
        }
    }

    /// Writes all of `bytes` to `fd`, looping over partial writes, EINTR and EAGAIN (a
    /// non-blocking standard output). Returns the errno of the failure, or nil.
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: inout [UInt8]) -> Int32? {
        bytes.withUnsafeBytes { buf -> Int32? in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n > 0 { done += n; continue }
                if n == 0 { return EIO }         // no progress and no error: do not spin
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK:
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, -1)
                default: return errno
                }
            }
            return nil
        }
    }

    // MARK: helpers

    /// What `mode` names, for "… is not a regular file" messages.
    private static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFDIR: return "a directory"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// The kind of the existing non-regular file at `path` (symlinks followed), or nil.
    private static func kindOfNonRegularFile(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT != S_IFREG else { return nil }
        return kindName(st.st_mode)
    }

    struct Errno: Error { let code: Int32 }
}

/// Why an output file cannot be opened or written; `message` is complete (option, path,
/// reason) and is printed after "tricolor: ".
struct OutputError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
