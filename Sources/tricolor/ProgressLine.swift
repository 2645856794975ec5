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
    /// thread; read by both under the lock.
    private var lock = pthread_mutex_t()
    private var wake = pthread_cond_t()
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
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&wake, nil)
    }

    deinit {
        pthread_cond_destroy(&wake)
        pthread_mutex_destroy(&lock)
    }

    /// Starts the thread (once). With no delay the first line is drawn here, before the
    /// workload starts, so even the shortest run shows it.
    func begin() {
        if delay <= 0 {
            pthread_mutex_lock(&lock)
            printed = true
            write("\r" + text(elapsed: 0) + "\u{1B}[K")
            pthread_mutex_unlock(&lock)
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
            Unmanaged<ProgressLine>.fromOpaque(box).release()
        }
    }

    /// Stops the thread and erases the line if one was shown.
    func stop() {
        pthread_mutex_lock(&lock)
        stopped = true
        pthread_cond_signal(&wake)
        pthread_mutex_unlock(&lock)
        if let thread { pthread_join(thread, nil) }
        thread = nil
        writingText {}
    }

    /// Runs `body`, which writes text to the terminal, with the line erased and the
    /// thread held off, so the text never lands after the line; the next tick draws the
    /// line again below it. Standard output is flushed before the lock is released.
    func writingText(_ body: () -> Void) {
        pthread_mutex_lock(&lock)
        if printed {
            write("\r\u{1B}[K")
            printed = false
        }
        body()
        fflush(nil)
        pthread_mutex_unlock(&lock)
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
        pthread_mutex_lock(&lock)
        while !stopped {
            let now = monotonicSeconds() - start
            if now >= next {
                printed = true
                fflush(nil)
                write("\r" + text(elapsed: now) + "\u{1B}[K")
                next = now.rounded(.down) + 1
            }
            // Sleep until the next whole second, or until stop() signals.
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let wait = max(0.01, next - (monotonicSeconds() - start))
            var ns = Int(ts.tv_nsec) + Int(wait * 1e9)
            ts.tv_sec += ns / 1_000_000_000
            ns %= 1_000_000_000
            ts.tv_nsec = ns
            pthread_cond_timedwait(&wake, &lock, &ts)
        }
        pthread_mutex_unlock(&lock)
    }

    private func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = OutputFile.writeAll(STDERR_FILENO, &bytes)
    }
}
