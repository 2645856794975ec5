import CTricolor
import Glibc
@_spi(Testing) @testable import Tricolor

// Helpers for the lifetime tests (threads that attach, exit, drop heaps) and for
// reading what the process holds from /proc.

/// Start a thread running `body` (named `name`, if given, so /proc and warnings show it),
/// with a native stack of `stackBytes` if given (else the default, 8 MiB).
func lifeStartThread(name: String? = nil, stackBytes: Int? = nil, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let f: () -> Void; let name: String?; init(_ f: @escaping () -> Void, _ n: String?) { self.f = f; name = n } }
    let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var t = pthread_t()
    var attr = pthread_attr_t()
    precondition(pthread_attr_init(&attr) == 0, "pthread_attr_init failed")
    defer { pthread_attr_destroy(&attr) }
    if let n = stackBytes {
        let rc = pthread_attr_setstacksize(&attr, n)
        precondition(rc == 0, "pthread_attr_setstacksize(\(n)) failed: \(rc)")
    }
    let rc = pthread_create(&t, &attr, { arg in
        let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        if let n = b.name { _ = n.withCString { tc_set_thread_name($0) } }
        b.f()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return t
}

func lifeJoin(_ t: pthread_t) { pthread_join(t, nil) }

/// A word threads hand-shake through (acquire loads, release stores).
final class LifeFlag: @unchecked Sendable {
    let word = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
    init() { word.initialize(to: 0) }
    deinit { word.deallocate() }
    var value: UInt { tc_load_acquire(word) }
    func set(_ v: UInt) { tc_store_release(word, v) }
    func increment() { _ = tc_fetch_add(word, 1) }
    /// Wait until the value is at least `v` (the caller is not attached, or is blocking).
    func wait(atLeast v: UInt = 1) { while value < v { tc_yield() } }
}

/// The whole contents of a /proc file (st_size is 0 there, so read to the end).
func readProcFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// A numeric field of /proc/self/status ("Threads", "VmSize" in kB, ...).
func procStatus(_ key: String) -> Int {
    for line in readProcFile("/proc/self/status").split(separator: "\n") where line.hasPrefix(key + ":") {
        let fields = line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
        return fields.first.flatMap { Int($0) } ?? -1
    }
    return -1
}

/// The number of this process's threads (/proc/self/task entries).
func procTaskCount() -> Int {
    guard let dir = opendir("/proc/self/task") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while let e = readdir(dir) {
        if withUnsafeBytes(of: e.pointee.d_name, { $0.first }) != UInt8(ascii: ".") { n += 1 }
    }
    return n
}

/// Resident set size in bytes (/proc/self/statm, second field, in pages).
func procResidentBytes() -> Int {
    let f = readProcFile("/proc/self/statm").split(separator: " ")
    return f.count > 1 ? (Int(f[1]) ?? -1) * Int(sysconf(Int32(_SC_PAGESIZE))) : -1
}

/// CPUs the calling thread may run on (its sched_getaffinity mask), counted here
/// independently of the runtime.
func affinityCPUCount() -> Int {
    var mask = [UInt8](repeating: 0, count: Int(TC_CPU_MASK_BYTES))
    guard mask.withUnsafeMutableBytes({ tc_current_affinity($0.baseAddress) }) == 0 else { return Int(tc_ncpu()) }
    return mask.reduce(0) { $0 + $1.nonzeroBitCount }
}

// MARK: counting retains and releases of one object

/// Counts the Swift runtime's retains and releases of one object, through the runtime's
/// instrumentation hooks (`_swift_retain`, `_swift_release`), made on the calling thread
/// only: the heap's collector threads pin it (a retain and a release) for each unit of
/// work they start meanwhile, which is not the mutator's traffic. The hooks are
/// process-wide: use it in a child process, where no other test runs.
enum RetainCounter {
    typealias RetainFn = @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?
    typealias ReleaseFn = @convention(c) (UnsafeMutableRawPointer?) -> Void
    nonisolated(unsafe) static var target: UnsafeMutableRawPointer? = nil
    nonisolated(unsafe) static var thread = pthread_self()
    nonisolated(unsafe) static var retains = 0
    nonisolated(unsafe) static var releases = 0
    nonisolated(unsafe) static var originalRetain: RetainFn? = nil
    nonisolated(unsafe) static var originalRelease: ReleaseFn? = nil

    /// Run `body` counting retains and releases of `object`; false if the runtime has
    /// no hooks to install.
    static func count(_ object: AnyObject, _ body: () -> Void) -> (retains: Int, releases: Int)? {
        guard let flag = dlsym(nil /* RTLD_DEFAULT */, "_swift_enableSwizzlingOfAllocationAndRefCountingFunctions_forInstrumentsOnly"),
              let retainHook = dlsym(nil, "_swift_retain"),
              let releaseHook = dlsym(nil, "_swift_release") else { return nil }
        let retainSlot = retainHook.assumingMemoryBound(to: RetainFn?.self)
        let releaseSlot = releaseHook.assumingMemoryBound(to: ReleaseFn?.self)
        target = Unmanaged.passUnretained(object).toOpaque()
        thread = pthread_self()
        retains = 0
        releases = 0
        originalRetain = retainSlot.pointee
        originalRelease = releaseSlot.pointee
        retainSlot.pointee = { p in
            if p == RetainCounter.target && pthread_equal(pthread_self(), RetainCounter.thread) != 0 {
                RetainCounter.retains += 1
                // To find who retains: the child's crash backtrace names the caller.
                if getenv("TRICOLOR_TRAP_ON_RETAIN") != nil { fatalError("TRICOLOR_TRAP_ON_RETAIN: a counted retain") }
            }
            return RetainCounter.originalRetain!(p)
        }
        releaseSlot.pointee = { p in
            if p == RetainCounter.target && pthread_equal(pthread_self(), RetainCounter.thread) != 0 { RetainCounter.releases += 1 }
            RetainCounter.originalRelease!(p)
        }
        flag.storeBytes(of: true, as: Bool.self)
        body()
        flag.storeBytes(of: false, as: Bool.self)
        retainSlot.pointee = originalRetain
        releaseSlot.pointee = originalRelease
        return (retains, releases)
    }
}

/// glibc's mallopt (malloc.h is not in the Glibc module); M_ARENA_MAX from malloc.h.
@_silgen_name("mallopt") func lifeMallopt(_ param: Int32, _ value: Int32) -> Int32
let lifeMArenaMax: Int32 = -8

/// Whether this process runs under AddressSanitizer or ThreadSanitizer (their
/// allocators keep freed memory, so memory figures mean nothing there).
let lifeUnderSanitizer = dlsym(nil, "__asan_init") != nil || dlsym(nil, "__tsan_init") != nil

/// With pins (`Heap.collectorUnit`, every build's default) a dropped heap may
/// be freed by one of its collector threads when the unit of work it is in ends, not by
/// the drop. Wait for that: until at most `threads` threads run (a heap's collector
/// threads end when its teardown is over). Without pins the teardown is synchronous and
/// this returns at once, so the caller's check stays strict.
func awaitPinnedTeardown(threads: Int) {
    if Heap.collectorThreadsPinHeap { while procStatus("Threads") > threads { tc_yield() } }
}
