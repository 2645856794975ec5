import CTricolor
import Glibc

// The post-mortem a fatal error leaves behind when GODEBUG names a path:
//
//     GODEBUG=tricolordump=crash
//
// makes `runtimeFatal` (out of memory, checked-mode misuse, a failed invariant), after
// printing its message and stack, write for every live heap of the process
//
//     crash.<pid>.txt            the report: the message, the failing thread's stack,
//                                per heap its phase, every mutator's status and stack
//                                depth (and in checked mode its frames), MemStats and
//                                the top types by bytes
//     crash.<pid>.<n>.tchd       heap n's dump (docs/heapdump-format.md)
//
// then end the process as usual (exit 2, or SIGABRT with GOTRACEBACK=crash). It is the
// core-file-free post-mortem of an out-of-memory crash.
//
// Best effort, never a hang. The failing thread may hold any runtime lock, the
// collector may be mid-cycle, and other threads may be running or blocked on a lock
// the failing thread holds, so the world is NOT stopped and no lock is waited for:
// - locks are only tried (types, globals, profile, heap, central lists); what a busy
//   lock guards is left out (a busy types lock leaves out type names, the profile
//   lock the sampled stacks), and a TEXT record of the dump says which;
// - MemStats are the lock-free counters (`memStatsWithoutLocks`): objects allocated
//   from spans still cached count as not yet allocated;
// - other threads keep running, so objects they allocate or free meanwhile may or may
//   not appear; the dump describes no single instant;
// - an alarm of 30 s ends the process (SIGALRM) if writing blocks (a full disk on
//   NFS, a FIFO nobody reads).
// A second fatal error during the dump (a runtimeCheck tripped by a torn read) ends
// the process at once with the first message already printed (see Fatal.swift).

/// The path prefix of `tricolordump` in GODEBUG, if set and not empty.
func fatalDumpPrefix() -> String? {
    guard let raw = getenv("GODEBUG") else { return nil }
    for item in String(cString: raw).split(separator: ",") {
        let kv = item.split(separator: "=", maxSplits: 1)
        if kv.count == 2, kv[0].trimmingSpaces == "tricolordump", !kv[1].isEmpty { return String(kv[1]) }
    }
    return nil
}

private extension Substring {
    var trimmingSpaces: Substring { drop(while: { $0 == " " }) }
}

/// Write the report and a dump of every live heap (see the file comment). Called by
/// `runtimeFatal` on the failing thread.
func writeFatalDumps(prefix: String, message: String, stack: String) {
    alarm(30)
    let pid = getpid()
    let reportPath = "\(prefix).\(pid).txt"
    var report = "fatal error: \(message)\n\n\(stack)\n"
    var written: [String] = []
    let heaps = Heap.debugListedHeaps()
    if heaps.isEmpty { report += "\nno live heap\n" }
    for (n, opaque) in heaps.enumerated() {
        // Unretained: a heap listed in the descriptor is alive (it leaves the list first
        // thing in deinit); retaining it here could race with that.
        Unmanaged<Heap>.fromOpaque(opaque)._withUnsafeGuaranteedRef { heap in
            let dumpPath = "\(prefix).\(pid).\(n).tchd"
            report += heap.fatalReportSection(index: n, dumpPath: dumpPath)
            written.append(dumpPath)
        }
    }
    let fd = open(reportPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if fd >= 0 {
        var r = report
        // The first failure, as errno (ENOSPC for a write that made no progress).
        var failure: Int32 = 0
        r.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let k = write(fd, buf.baseAddress! + off, buf.count - off)
                if k > 0 { off += k } else if k < 0 && errno == EINTR { continue } else { failure = k < 0 ? errno : ENOSPC; break }
            }
        }
        if close(fd) != 0 && failure == 0 { failure = errno }
        let dumps = written.isEmpty ? "" : " and heap dump\(written.count == 1 ? "" : "s") \(written.joined(separator: ", "))"
        if failure == 0 {
            writeStderr("tricolor: wrote the fatal-error report \(reportPath)\(dumps)\n")
        } else {
            writeStderr("tricolor: the fatal-error report \(reportPath) is incomplete: \(String(cString: strerror(failure)))\(dumps.isEmpty ? "" : " (also written:\(dumps.dropFirst(4)))")\n")
        }
    } else {
        writeStderr("tricolor: cannot write the fatal-error report \(reportPath): \(String(cString: strerror(errno)))\n")
    }
    alarm(0)
}

extension Heap {
    /// The frames part of a mutator's line: checked mode records frames
    /// (Runtime/ShadowStack.swift). Their list is read only where it cannot move: the
    /// failing thread's own mutator, or one that is not running (its owner changes the
    /// records only while running); a running one shows the count alone.
    func fatalFramesText(_ m: UnsafeMutablePointer<MutatorState>) -> String {
        guard checked else { return "; " + AllocatorState.framesNotRecorded }
        let n = m.pointee.debugFrameCount
        var out = ", \(n) frame\(n == 1 ? "" : "s")"
        guard n > 0, let fr = m.pointee.debugFrames,
              m.rawThreadID == tc_thread_id() || m.rawStatus != .running else { return out }
        out += " (slot+count:"
        for k in 0..<Swift.min(n, 32) { out += " \(fr[k].offset)+\(fr[k].slots)" }
        return out + (n > 32 ? " …)" : ")")
    }

    /// This heap's part of the fatal report; writes its dump to `dumpPath` on the way
    /// (its type tally gives the top types).
    func fatalReportSection(index n: Int, dumpPath: String) -> String {
        var out = "\nheap \(n) (\(hex(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())))): phase "
        out += (phase == .off ? "off" : phase == .mark ? "mark" : "mark termination")
        out += ", sweepgen \(sweepgen), numGC \(marking.numGC.load(.relaxed))\n"
        out += "mutators (read without the sched lock):\n"
        var count = 0
        forEachMutator { m in
            count += 1
            out += "  mutator \(m.pointee.id) thread \(m.rawThreadID) \(mutatorStatusName(m.rawStatus)): stack depth \(m.pointee.stackTop) slots of \(m.pointee.stackCap)"
            out += fatalFramesText(m)
            out += m.rawThreadID == tc_thread_id() ? " (the failing thread)\n" : "\n"
            if count > 10_000 { out += "  … (list too long: torn read?)\n"; return }
        }
        if count == 0 { out += "  none attached\n" }
        out += "MemStats (lock-free counters):\n"
        for (k, v) in memStatsWithoutLocks() { out += "  \(k) \(v)\n" }
        // The dump, with a per-type tally.
        let tally = UnsafeMutablePointer<UInt>.allocate(capacity: 65536 * 2)
        tally.initialize(repeating: 0, count: 65536 * 2)
        defer { tally.deallocate() }
        let fd = open(dumpPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            return out + "heap dump: cannot create \(dumpPath): \(String(cString: strerror(errno)))\n"
        }
        var w = DumpWriter(fd: fd)
        let c = writeDumpBody(&w, locking: false, typeTally: tally)
        w.uvarint(DumpTag.text.rawValue); w.string("fatal error"); w.string("")
        w.uvarint(DumpTag.end.rawValue); w.uvarint(c.objects); w.uvarint(c.roots)
        w.flush()
        let err = w.error
        w.destroy()
        close(fd)
        var rows: [(word: Int, count: UInt, bytes: UInt)] = []
        for t in 0..<65536 where tally[t * 2] != 0 { rows.append((t, tally[t * 2], tally[t * 2 + 1])) }
        rows.sort { ($0.bytes, $0.count) > ($1.bytes, $1.count) }
        out += "top types by bytes (objects in the dump):\n"
        let names: [String]? = typesLock.tryLock() ? { defer { typesLock.unlock() }; return typeNames }() : nil
        for r in rows.prefix(10) {
            let id = r.word & 0x7fff
            let name = id == 0 ? "<bytes>" : (names.map { id < $0.count ? $0[id] : "<type \(id)>" } ?? "<type \(id)>")
            out += "  \(r.count) objects, \(r.bytes) bytes: \(r.word & 0x8000 != 0 ? "[]" : "")\(name)\n"
        }
        out += err == 0 ? "heap dump: \(dumpPath) (\(c.objects) objects, \(c.roots) roots)\n"
                        : "heap dump: \(dumpPath) failed: \(String(cString: strerror(err)))\n"
        return out
    }
}
