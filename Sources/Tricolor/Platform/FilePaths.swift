import Glibc

// Path helpers for writers that replace a file through a temporary beside it: the heap
// dump writer here, and the command-line tool's output files (Sources/tricolor).

/// File paths as a replacing writer needs them.
@_spi(Tools) public enum FilePaths {
    /// Why a path could not be resolved: the errno of `readlink`, or ELOOP.
    public struct Failure: Error {
        /// The errno value.
        public let code: Int32
    }

    /// `path` with the symlinks of its last component followed (at most 40, as Linux), so
    /// that a rename replaces the file a plain open would write, not the link. A dangling
    /// link resolves to its (missing) target, which is then created.
    public static func followingFinalSymlinks(_ path: String) -> Result<String, Failure> {
        var p = path
        for _ in 0..<40 {
            var st = stat()
            guard lstat(p, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return .success(p) }
            var buf = [UInt8](repeating: 0, count: Int(PATH_MAX))
            let n = buf.withUnsafeMutableBytes { readlink(p, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            if n < 0 { return .failure(Failure(code: errno)) }
            let target = String(decoding: buf[0..<n], as: UTF8.self)
            p = target.hasPrefix("/") ? target : split(p).directory + "/" + target
        }
        return .failure(Failure(code: ELOOP))
    }

    /// (directory, last component) of `path`; the directory of "name" is ".".
    public static func split(_ path: String) -> (directory: String, base: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }
}
