// The progress line of `tricolor run`: for a run longer than a few seconds, when standard
// error is a terminal, one line on stderr, rewritten in place once a second, then erased.
//
// Invariants: nothing is written when stderr is not a terminal (or with --no-progress),
// so files, pipes and CI logs see exactly the workload's text. The line is erased before
// the summary is printed, so no text ever follows it on the same line.

import Glibc
import Tricolor
import TricolorWorkloads

/// A background thread that prints `tricolor: run <workload>: 4 s, 12 GCs` on stderr.
/// It reads only `Heap.gcStats()` (a lock, never a stop-the-world) and is not a mutator.
final class ProgressLine: @unchecked Sendable {
    /// What the line names ("run liveheap").
    let title: String
    /// Seconds before the first line; the default keeps short runs silent.
    let delay: Double
    /// The expected length of the run, when the workload knows it (liveheap's seconds).
    let expectedSeconds: Double?
    let heap: Heap
    let start = monotonicSeconds()

    /// Guards `stopped` and `printed`. Written: `stop()` (main thread) and the progress
    /// thread; read by both under the lock. The mutex and condition live in memory of
    /// their own: a stored property's address is not stable when passed with `&`.
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    /// Signalled by `stop()`; its timed wait runs on CLOCK_MONOTONIC, so a step of the
    /// wall clock neither stalls nor hurries the line.
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    private var stopped = false
    private var printed = false
    private var thread: pthread_t?

    /// Whether a progress line may be shown at all: stderr is a terminal.
    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    init(title: String, heap: Heap, delay: Double, expectedSeconds: Double?) {
        self.title = title
        self.heap = heap
        self.delay = delay
        self.expectedSeconds = expectedSeconds
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_mutex_t())
        wake = .allocate(capacity: 1)
        wake.initialize(to: pthread_cond_t())
        ProgressLine.check(pthread_mutex_init(lock, nil), "pthread_mutex_init")
        var attr = pthread_condattr_t()
        ProgressLine.check(pthread_condattr_init(&attr), "pthread_condattr_init")
        ProgressLine.check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), "pthread_condattr_setclock")
        ProgressLine.check(pthread_cond_init(wake, &attr), "pthread_cond_init")
        ProgressLine.check(pthread_condattr_destroy(&attr), "pthread_condattr_destroy")
    }

    deinit {
        pthread_cond_destroy(wake)
        pthread_mutex_destroy(lock)
        wake.deinitialize(count: 1)
        wake.deallocate()
        lock.deinitialize(count: 1)
        lock.deallocate()
    }

    /// Stops the process with a message when a pthread call returns an error: the line
    /// cannot be drawn or stopped safely without its lock and condition.
    private static func check(_ rc: Int32, _ call: String) {
        if rc != 0 { fatalError("tricolor: progress line: \(call) failed: \(errnoText(rc))") }
    }

    /// Starts the thread (once). With no delay the first line is drawn here, before the
    /// workload starts, so even the shortest run shows it.
    func begin() {
        if delay <= 0 {
            ProgressLine.check(pthread_mutex_lock(lock), "pthread_mutex_lock")
            printed = true
            write("\r" + text(elapsed: 0) + "\u{1B}[K")
            ProgressLine.check(pthread_mutex_unlock(lock), "pthread_mutex_unlock")
        }
        let box = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        if pthread_create(&t, nil, { arg in
            let me = Unmanaged<ProgressLine>.fromOpaque(arg!).takeRetainedValue()
            me.loop()
            return nil
        }, box) == 0 {
            thread = t
        } else {
            // No thread, no line (beyond a first one): the run itself is unaffected.
            Unmanaged<ProgressLine>.fromOpaque(box).release()
        }
    }

    /// Stops the thread and erases the line if one was shown.
    func stop() {
        ProgressLine.check(pthread_mutex_lock(lock), "pthread_mutex_lock")
        stopped = true
        ProgressLine.check(pthread_cond_signal(wake), "pthread_cond_signal")
        ProgressLine.check(pthread_mutex_unlock(lock), "pthread_mutex_unlock")
        if let thread { ProgressLine.check(pthread_join(thread, nil), "pthread_join") }
        thread = nil
        writingText {}
    }

    /// Runs `body`, which writes text to the terminal, with the line erased and the
    /// thread held off, so the text never lands after the line; the next tick draws the
    /// line again below it. Standard output is flushed before the lock is released; a
    /// failed flush stays in ferror(stdout), which the command checks at its end.
    func writingText(_ body: () -> Void) {
        ProgressLine.check(pthread_mutex_lock(lock), "pthread_mutex_lock")
        if printed {
            write("\r\u{1B}[K")
            printed = false
        }
        body()
        flushStandardOutput()
        ProgressLine.check(pthread_mutex_unlock(lock), "pthread_mutex_unlock")
    }

    /// The text of the line after `elapsed` seconds.
    func text(elapsed: Double) -> String {
        let gcs = heap.gcStats().numGC
        var s = "tricolor: \(title): \(Int(elapsed)) s"
        if let total = expectedSeconds { s += " of about \(Int(total.rounded(.up))) s" }
        return s + ", \(gcs) GC\(gcs == 1 ? "" : "s")"
    }

    private func loop() {
        var next = delay
        ProgressLine.check(pthread_mutex_lock(lock), "pthread_mutex_lock")
        while !stopped {
            let now = monotonicSeconds() - start
            if now >= next {
                printed = true
                flushStandardOutput()
                write("\r" + text(elapsed: now) + "\u{1B}[K")
                next = now.rounded(.down) + 1
            }
            // Sleep until the next whole second, or until stop() signals.
            var ts = timespec()
            ProgressLine.check(clock_gettime(CLOCK_MONOTONIC, &ts) == 0 ? 0 : errno, "clock_gettime")
            let wait = max(0.01, next - (monotonicSeconds() - start))
            var ns = Int(ts.tv_nsec) + Int(wait * 1e9)
            ts.tv_sec += ns / 1_000_000_000
            ns %= 1_000_000_000
            ts.tv_nsec = ns
            let rc = pthread_cond_timedwait(wake, lock, &ts)
            if rc != 0 && rc != ETIMEDOUT { ProgressLine.check(rc, "pthread_cond_timedwait") }
        }
        ProgressLine.check(pthread_mutex_unlock(lock), "pthread_mutex_unlock")
    }

    private func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = OutputFile.writeAll(STDERR_FILENO, &bytes)
    }
}
