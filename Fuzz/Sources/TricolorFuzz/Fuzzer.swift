// The libFuzzer entry point and what lives for the whole process: the heap, the registered
// types, the global root pool, the hooks' shared state and the counters printed at exit.
// See Program.swift for how input bytes become API calls and Model.swift for the mirror
// that every result is checked against.
//
// Build and run: Fuzz/run.sh MODE SECONDS (MODE: unchecked, checked, checkmark).
//
// How this target is built (Swift 6.3.1, Linux): an executableTarget with no main.swift
// and no @main, parsed as library files (no main.swift), and built with
// `swift build -c release --sanitize=fuzzer --sanitize=address --product TricolorFuzz`.
// `-sanitize=fuzzer` makes swiftc link libFuzzer's main, which calls the
// @_cdecl("LLVMFuzzerTestOneInput") function below. (`--sanitize=fuzzer,address` in one
// flag is rejected by `swift build`; give the flag twice.) Built without
// `--sanitize=fuzzer` the target does not link (no main): build TricolorSoak alone then.
//
// Environment (besides GOGC, GOMEMLIMIT, GODEBUG, read by Configuration.fromEnvironment()):
//   TRICOLOR_FUZZ_TRACE=1            print every operation on stderr (to read a crash input)
//   TRICOLOR_FUZZ_HUGE=0             skip huge and overflowing sizes (see Flags.huge)
//   TRICOLOR_FUZZ_CHECKED_MEMLIMIT=0 no setMemoryLimit in checked mode (see Flags)
//   TRICOLOR_FUZZ_SELFTEST=1         lose objects on purpose: the run must fail (see Flags)

import Glibc
import Synchronization
import Tricolor

/// Switches for operations that hit known open defects. Each defaults to off; turn it on
/// (environment variable = 1) to check whether the defect is fixed, then make it the default.
enum Flags {
    /// tryAllocateBytes/tryAllocateArray with sizes of 2^32 and more, near Int.max,
    /// negative, and counts whose product overflows: each must return nil. (Was off
    /// while those sizes overflowed or committed memory; fixed, so on unless =0.)
    static let huge = flag("TRICOLOR_FUZZ_HUGE", default: true)
    /// setMemoryLimit while GODEBUG=tricolorcheck=1. (Was off while that died of a lock
    /// rank violation; fixed, so on unless =0.)
    static let checkedMemoryLimit = flag("TRICOLOR_FUZZ_CHECKED_MEMLIMIT", default: true)
    /// Self-test of the checks: a new object meant for a global is stored there only after
    /// the next collect() has freed it (the mirror expects it all along): a lost object,
    /// as a collector bug would lose it. A run must then report a finding.
    static let selfTest = flag("TRICOLOR_FUZZ_SELFTEST")
    /// Print each operation as it runs.
    static let trace = flag("TRICOLOR_FUZZ_TRACE")

    static func flag(_ name: String, default value: Bool = false) -> Bool {
        guard let v = getenv(name) else { return value }
        return ["1", "true", "on", "yes"].contains(String(cString: v))
    }
}

/// Counters printed at exit. Written only by the fuzzing thread.
struct Stats {
    var inputs = 0
    /// Calls into Tricolor's public API (allocations, loads, stores, frame and root
    /// operations, collections, settings, hooks, profiles, attach/detach, ...).
    var operations = 0
    var allocations = 0
    var collections = 0
    var verifications = 0
    var objectsVerified = 0
    var attaches = 0
}

nonisolated(unsafe) var stats = Stats()

func printStats() {
    let s = stats
    let frees = hookState.freeEvents.load(ordering: .relaxed)
    let allocEvents = hookState.allocEvents.load(ordering: .relaxed)
    let line = "tricolor-fuzz: \(s.inputs) inputs, \(s.operations) operations (\(s.allocations) allocations, \(s.collections) collect() calls, \(s.attaches) attaches), \(s.verifications) verifications of \(s.objectsVerified) objects, hook events: \(allocEvents) allocations \(frees) frees, findings: 0\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// A finding: print it and trap, so libFuzzer saves the input.
func fail(_ message: String) -> Never {
    let text = "tricolor-fuzz: FINDING: \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    fatalError("tricolor-fuzz finding (see the line above)")
}

func trace(_ s: @autoclosure () -> String) {
    if Flags.trace {
        let text = "  op: \(s())\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
    }
}

/// State the allocation and free hooks share with the fuzzing thread. Hooks run inside
/// the runtime (the free hook on whichever thread sweeps), so they touch only this.
final class HookState: Sendable {
    /// Address → serial of every object the mirror holds reachable from a root. Entries
    /// are removed before the API call that makes an object unreachable and added after
    /// the allocation that creates it, so a free of an address in this map is a lost
    /// object (the runtime calls the free hook while it still owns the span, before the
    /// slot can be handed out again).
    let live = Mutex<[UInt: Int]>([:])
    let freeEvents = Atomic<Int>(0)
    let allocEvents = Atomic<Int>(0)
    let lastAllocAddress = Atomic<UInt>(0)
    let lastAllocSize = Atomic<Int>(0)

    func onFree(_ ev: FreeEvent) {
        freeEvents.add(1, ordering: .relaxed)
        // Tiny objects sit at any byte offset of a 16-byte block; other objects start
        // at their slot (or, large, at their span).
        let span = ev.slotSize <= 16 ? UInt(ev.slotSize) : 1
        let hit: (UInt, Int)? = live.withLock { live in
            for off in 0..<span {
                if let s = live[ev.address + off] { return (ev.address + off, s) }
            }
            return nil
        }
        if let (a, serial) = hit {
            fail("the free hook reported slot 0x\(String(ev.address, radix: 16)) (\(ev.slotSize) bytes, size class \(ev.sizeClass), type \(ev.typeName)) freed, but it holds object 0x\(String(a, radix: 16)) (serial \(serial)) that is reachable from a root")
        }
    }

    func onAlloc(_ ev: AllocationEvent) {
        allocEvents.add(1, ordering: .relaxed)
        lastAllocAddress.store(ev.address, ordering: .relaxed)
        lastAllocSize.store(ev.size, ordering: .relaxed)
    }
}

let hookState = HookState()

/// The one driver of the process (one heap per process; created by the first input).
nonisolated(unsafe) let driver = Driver()

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = Input(data, size)
    driver.run(&input)
    return 0
}
