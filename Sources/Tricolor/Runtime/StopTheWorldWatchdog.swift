import CTricolor
import Glibc
import Runtime

// The stop-the-world watchdog (issue #12 part 3). A stop waits for every running mutator
// to reach a safepoint; one that never does (it waits for a lock whose holder waits for
// the stop, it computes without calling `safepoint()`) hangs the process silently. After
// `Configuration.stopTheWorldWatchdogMilliseconds` of waiting, and again each period
// after that, `stopTheWorld` prints which mutators hold it up, on stderr:
//
//     tricolor: stop-the-world watchdog: the world has not stopped after 2.0 s; waiting for 1 mutator:
//       mutator 2 on thread 4242 [worker]: running, 2.0 s since it last answered a safepoint request
//         <its stack, symbolized, innermost first>
//     tricolor: a mutator answers at allocations and safepoint(); wait for locks with HeapMutex or inside blocking { }
//
// and keeps waiting (a slow thread is not a dead one). The stack is printed by the
// thread itself: the watchdog sends it SIGURG (as Go's preemption does; ignored by
// default, so harmless to other code), and our handler captures and symbolizes its
// own stack with the toolchain's backtracer and writes it to stderr. The watchdog
// waits up to a second for that; a thread that does not answer (signals blocked, or
// stuck in the handler) is reported as such. The handler allocates, so it is only
// used on a process that is already stuck, never on a healthy path.
//
// Shared state: `stackRequest` (the tid asked to print, 0 = none) and `stackDone` are
// written by the watchdog (sched lock held: one stopper at a time) and the signalled
// thread, with atomic operations; the handler is installed once (`installHandler`).

enum StopTheWorldWatchdog {
    /// The thread asked to print its stack (0: none); the handler clears it when done.
    nonisolated(unsafe) static let stackRequest: UnsafeMutablePointer<UInt> = {
        let p = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// The SIGURG action this process had before ours (written once, by
    /// `installHandler`, before our handler can run): a signal that is not our request
    /// is passed on to it, so that a program's own SIGURG handler keeps working.
    nonisolated(unsafe) static let previousAction: UnsafeMutablePointer<sigaction> = {
        let p = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
        p.initialize(to: sigaction())
        return p
    }()

    /// Install the SIGURG handler (once, at the first watchdog report): 0, or the errno
    /// of a failed `sigaction`, in which case no stack can be asked for.
    static let installHandler: Int32 = {
        var sa = sigaction()
        sa.__sigaction_handler.sa_sigaction = { sig, info, context in StopTheWorldWatchdog.handle(sig, info, context) }
        sa.sa_flags = SA_RESTART | SA_SIGINFO
        sigemptyset(&sa.sa_mask)
        return sigaction(SIGURG, &sa, previousAction) == 0 ? 0 : errno
    }()

    /// Our SIGURG handler: the watchdog's request for this thread's stack, or someone
    /// else's signal, passed on. Keeps the interrupted code's errno.
    static func handle(_ sig: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
        let savedErrno = errno
        defer { errno = savedErrno }
        if tc_load_acquire(stackRequest) == UInt(tc_thread_id()) {
            printOwnStack()
            return
        }
        let previous = previousAction.pointee
        if previous.sa_flags & SA_SIGINFO != 0 {
            previous.__sigaction_handler.sa_sigaction?(sig, info, context)
        } else if let h = previous.__sigaction_handler.sa_handler {
            // SIG_DFL (0) and SIG_IGN (1) both ignore SIGURG.
            if UInt(bitPattern: unsafeBitCast(h, to: Int.self)) > 1 { h(sig) }
        }
    }

    /// In the signal handler of a thread the watchdog asked: print this thread's stack.
    static func printOwnStack() {
        let me = UInt(tc_thread_id())
        if tc_load_acquire(stackRequest) != me { return }
        let text = symbolizedStack(sourceLines: false, dropping: ["printOwnStack", "sigaction", "__restore_rt"])
        writeStderr(text.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n") + "\n")
        tc_store_release(stackRequest, 0)
    }

    /// The kernel's name for thread `tid` of this process ("" if unknown).
    static func threadName(_ tid: UInt64) -> String {
        let fd = open("/proc/self/task/\(tid)/comm", O_RDONLY)
        if fd < 0 { return "" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buf, buf.count)
        if n <= 0 { return "" }
        var s = String(decoding: buf[0..<n], as: UTF8.self)
        if s.hasSuffix("\n") { s.removeLast() }
        return s
    }

    /// Ask thread `tid` to print its stack and wait (up to 1 s) for it; says why not
    /// when it cannot be had.
    static func requestStack(of tid: UInt64) {
        if installHandler != 0 {
            writeStderr("    (no stack: cannot install the SIGURG handler: \(String(cString: strerror(installHandler))))\n")
            return
        }
        tc_store_release(stackRequest, UInt(tid))
        if tc_signal_thread(tid, SIGURG) != 0 {
            tc_store_release(stackRequest, 0)
            writeStderr("    (no stack: could not signal thread \(tid): errno \(errno))\n")
            return
        }
        let deadline = tc_nanotime() + 1_000_000_000
        while tc_load_acquire(stackRequest) != 0 {
            if tc_nanotime() > deadline {
                tc_store_release(stackRequest, 0)
                writeStderr("    (no stack: thread \(tid) did not answer the signal within 1 s: it blocks SIGURG or is stuck where it cannot run a handler)\n")
                return
            }
            tc_sleep_ns(1_000_000)
        }
    }
}

extension Heap {
    /// The watchdog's report: every mutator still running, `waited` ns into a stop.
    /// Sched lock held (the mutators cannot come or go meanwhile).
    func reportStuckMutators(waited: UInt64) {
        var stuck: [UnsafeMutablePointer<MutatorState>] = []
        forEachMutator { if $0.rawStatus == .running { stuck.append($0) } }
        if stuck.isEmpty { return }
        let now = tc_nanotime()
        writeStderr("tricolor: stop-the-world watchdog: the world has not stopped after \(seconds(waited)); waiting for \(stuck.count) mutator\(stuck.count == 1 ? "" : "s"):\n")
        for m in stuck {
            let tid = m.rawThreadID
            let name = StopTheWorldWatchdog.threadName(tid)
            let last = tc_load_relaxed(m.lastSafepointAddress)
            let since = last == 0 ? "it has not answered a safepoint request since it attached" : "\(seconds(now &- UInt64(last))) since it last answered a safepoint request"
            writeStderr("  mutator \(m.pointee.id) on thread \(tid)\(name.isEmpty ? "" : " [\(name)]"): running, \(since)\n")
            StopTheWorldWatchdog.requestStack(of: tid)
        }
        writeStderr("tricolor: a mutator answers at allocations and safepoint(); wait for locks with HeapMutex (or m.withLock) and for anything else inside m.blocking { }; still waiting\n")
    }

    private func seconds(_ ns: UInt64) -> String {
        let tenths = ns / 100_000_000
        return "\(tenths / 10).\(tenths % 10) s"
    }
}
