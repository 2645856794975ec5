import Foundation
import Glibc
import XCTest
@_spi(Testing) @testable import Tricolor
@testable import TricolorProfiling

// A chain of distinctively named functions that captures the stack at its deepest point:
// Outer -> Middle -> Dingo -> Inner. `@inline(never)` keeps a function a frame of its
// own; `@_optimize(none)` also keeps its calls from becoming tail calls, which leave no
// frame record. Dingo is `@inline(__always)`: in release builds it is inlined into
// Middle (the symbolizer must report it as an inlined frame); in debug builds it is a
// frame of its own. Either way the names come out in the same order.

@inline(never) @_optimize(none)
func stackChainOuterAardvark(skip: Int, max: Int) -> [UInt] {
    stackChainMiddleBadger(skip: skip, max: max)
}

@inline(never)
func stackChainMiddleBadger(skip: Int, max: Int) -> [UInt] {
    stackChainInlinedDingo(skip: skip, max: max)
}

@inline(__always)
func stackChainInlinedDingo(skip: Int, max: Int) -> [UInt] {
    let stack = stackChainInnerCapybara(skip: skip, max: max)
    stackChainSink(stack.count)   // a call after Inner's: no tail call
    return stack
}

@inline(never) @_optimize(none)
func stackChainSink(_ n: Int) {}

/// Several captures from one call site, so all frames above the chain match.
@inline(never) @_optimize(none)
func stackChainCaptures(skips: [Int], max: Int) -> [[UInt]] {
    var out: [[UInt]] = []
    for skip in skips { out.append(stackChainOuterAardvark(skip: skip, max: max)) }
    return out
}

/// Returns the captured return addresses. The buffer has one extra slot holding a
/// sentinel, which must survive: the walk writes at most `max` entries.
@inline(never) @_optimize(none)
func stackChainInnerCapybara(skip: Int, max: Int) -> [UInt] {
    let sentinel: UInt = 0x5e47_14e1
    let buf = UnsafeMutablePointer<UInt>.allocate(capacity: max + 1)
    defer { buf.deallocate() }
    buf.initialize(repeating: sentinel, count: max + 1)
    let n = captureStack(skip: skip, into: buf, max: max)
    precondition(buf[max] == sentinel, "captureStack wrote past max")
    return Array(UnsafeBufferPointer(start: buf, count: n))
}

final class SymbolizeTests: XCTestCase {
    /// Function names of a captured stack, innermost first, inline chains expanded.
    private func names(_ stack: [UInt], _ sym: Symbolizer) -> [String] {
        stack.flatMap { sym.frames(for: $0 - 1) }.map(\.function)
    }

    private func index(of needle: String, in names: [String], file: StaticString = #filePath, line: UInt = #line) -> Int {
        guard let i = names.firstIndex(where: { $0.contains(needle) }) else {
            XCTFail("\(needle) not in \(names)", file: file, line: line)
            return -1
        }
        return i
    }

    func testChainSymbolizesInnermostFirst() {
        let stack = stackChainOuterAardvark(skip: 0, max: 64)
        XCTAssertGreaterThanOrEqual(stack.count, 4)
        let sym = Symbolizer()

        // Entry 0 is the call site of captureStack inside the innermost function.
        let first = sym.frames(for: stack[0] - 1)
        XCTAssertEqual(first.count, 1, "\(first)")
        XCTAssertTrue(first[0].function.hasPrefix("TricolorTests.stackChainInnerCapybara("), first[0].function)

        let frames = stack.flatMap { sym.frames(for: $0 - 1) }
        let all = frames.map(\.function)
        let inner = index(of: "stackChainInnerCapybara", in: all)
        let dingo = index(of: "stackChainInlinedDingo", in: all)
        let middle = index(of: "stackChainMiddleBadger", in: all)
        let outer = index(of: "stackChainOuterAardvark", in: all)
        let test = index(of: "testChainSymbolizesInnermostFirst", in: all)
        XCTAssertEqual([inner, dingo, middle, outer], [0, 1, 2, 3], "\(all)")
        XCTAssertLessThan(outer, test)

        // Lines: each frame's own line in this file; each caller's line comes before its
        // callee's (the chain is written outermost first).
        let chain = frames.prefix(4)
        for f in chain {
            XCTAssertTrue(f.file.hasSuffix("Tests/TricolorTests/Profiling/SymbolizeTests.swift"), "\(f)")
            XCTAssertGreaterThan(f.line, 0, "\(f)")
        }
        if chain.count == 4 {
            XCTAssertEqual(chain.map(\.line), chain.map(\.line).sorted(by: >), "\(chain)")
        }

        #if !DEBUG
        // Optimized: Dingo is inlined into Middle, so one PC gives both frames.
        let middleFrames = sym.frames(for: stack[1] - 1).map(\.function)
        XCTAssertEqual(middleFrames.count, 2, "\(middleFrames)")
        XCTAssertTrue(middleFrames.first?.contains("stackChainInlinedDingo") == true, "\(middleFrames)")
        XCTAssertTrue(middleFrames.last?.contains("stackChainMiddleBadger") == true, "\(middleFrames)")
        #endif

        // Cached: the same answer again.
        XCTAssertEqual(sym.frames(for: stack[0] - 1), first)
    }

    func testMappingsListTheExecutableFirst() {
        let stack = stackChainOuterAardvark(skip: 0, max: 8)
        let sym = Symbolizer()
        let maps = sym.mappings
        XCTAssertGreaterThan(maps.count, 1)
        var path = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &path, path.count - 1)
        XCTAssertGreaterThan(n, 0)
        let exe = String(decoding: path.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        XCTAssertEqual(maps[0].file, exe)
        XCTAssertTrue(maps[0].start <= UInt64(stack[0]) && UInt64(stack[0]) < maps[0].limit, "\(maps[0])")
        XCTAssertFalse(maps[0].buildID.isEmpty)
        XCTAssertTrue(maps.contains { $0.file.contains("libc.so") }, "\(maps.map(\.file))")
        for m in maps { XCTAssertLessThan(m.start, m.limit, "\(m)") }
    }

    func testSkipDropsFrames() {
        let stacks = stackChainCaptures(skips: [0, 2], max: 256)
        XCTAssertLessThan(stacks[0].count, 256, "stack deeper than the test assumes")
        XCTAssertEqual(stacks[1], Array(stacks[0].dropFirst(2)))
        // What the skipped frames are depends on inlining (Dingo is a frame of its own
        // only in debug builds); the innermost one is gone either way.
        let sym = Symbolizer()
        let kept = names(stacks[1], sym)
        XCTAssertFalse(kept.contains { $0.contains("stackChainInnerCapybara") }, "\(kept)")
        XCTAssertTrue(kept.contains { $0.contains("stackChainOuterAardvark") }, "\(kept)")
    }

    func testWalkStopsAtMax() {
        let full = stackChainCaptures(skips: [0], max: 64)[0]
        XCTAssertGreaterThan(full.count, 4)
        for max in [0, 1, 2, 3, 4] {
            let part = stackChainCaptures(skips: [0], max: max)[0]
            XCTAssertEqual(part, Array(full.prefix(max)))   // the sentinel check is in Inner
        }
        XCTAssertEqual(stackChainCaptures(skips: [1000], max: 8)[0], [])
    }

    func testUnknownPCHasNoFrames() {
        let sym = Symbolizer()
        XCTAssertEqual(sym.frames(for: 0x10), [])
    }

    /// The DWARF reader survives damaged input: a copy of this executable with bytes
    /// overwritten (deterministically) past the code, where the debug sections are.
    func testDamagedDebugInfoDoesNotCrash() throws {
        let fd = open("/proc/self/exe", O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        close(fd)
        XCTAssertNotNil(DwarfImage(path: "/proc/self/exe"))
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"] ?? FileManager.default.temporaryDirectory.path
        let path = tmp + "/tricolor-symbolize-test-\(getpid())"
        defer { unlink(path) }
        var rng: UInt64 = 0x9e37_79b9_7f4a_7c15
        var imagesRead = 0
        for round in 0..<4 {
            var damaged = bytes
            for _ in 0..<(round == 0 ? 64 : 4096) {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                let at = bytes.count / 3 + Int((rng >> 33) % UInt64(bytes.count - bytes.count / 3))
                damaged[at] = UInt8(truncatingIfNeeded: rng >> 13)
            }
            let out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            XCTAssertGreaterThanOrEqual(out, 0)
            _ = damaged.withUnsafeBytes { write(out, $0.baseAddress, $0.count) }
            close(out)
            if let image = DwarfImage(path: path) {
                imagesRead += 1
                for a in stride(from: UInt64(0), to: UInt64(bytes.count), by: 4099) {
                    _ = image.location(at: a)
                    _ = image.functionName(at: a)
                    for call in image.inlinedCalls(at: a) { _ = image.subprogramName(at: call.origin); _ = image.file(call.callFile) }
                }
            }
        }
        XCTAssertGreaterThan(imagesRead, 0, "no damaged copy was read at all: the test tests nothing")
        XCTAssertNil(DwarfImage(path: "/proc/self/status"))   // not ELF (and st_size 0)
        XCTAssertNil(DwarfImage(path: "/nonexistent/tricolor"))
    }

    /// A new thread has its own stack bounds; the walk ends inside them.
    func testCaptureOnAnotherThread() {
        final class Box { var stack: [UInt] = [] }
        let box = Box()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue()
            box.stack = stackChainOuterAardvark(skip: 0, max: 64)
            return nil
        }, Unmanaged.passUnretained(box).toOpaque())
        XCTAssertEqual(rc, 0)
        pthread_join(tid, nil)
        XCTAssertGreaterThanOrEqual(box.stack.count, 3)
        XCTAssertLessThan(box.stack.count, 64)
        let all = names(box.stack, Symbolizer())
        XCTAssertEqual(Array(all.prefix(3)).map { $0.contains("stackChain") }, [true, true, true], "\(all)")
    }
}
