@_spi(Testing) @testable import Tricolor
// The C copies the runtime keeps for debuggers (Observability/DebugDescriptor.swift):
// each span's lifecycle specials (`MSpan.debugSpecials`, Runtime/Specials.swift) and, in
// checked mode, each mutator's shadow-stack frames (`MutatorState.debugFrames`,
// Runtime/ShadowStack.swift), and how `allocatorState()`, `inspect` and the fatal
// report show them. The gdb side is GDBExtensionTests. Invariants checked: a span's
// copy equals its list record for record through insertions, removals and sweeps, and
// is freed with it; checked-mode frame records tile the stack; unchecked mutators say
// that frames are not recorded.
import XCTest
import Foundation
import Glibc
import CTricolor

final class DebugMirrorTests: WatchdogTestCase {

    /// The records of the span holding `addr`, read from its C copy the way gdb does.
    private func mirror(_ heap: Heap, _ addr: UInt) -> [tc_debug_special] {
        heap.specials.lock.withLock {
            guard let s = heap.spanOf(addr), let m = s.pointee.debugSpecials else { return [] }
            return (0..<Int(s.pointee.debugSpecialCount)).map { m[$0] }
        }
    }

    // MARK: specials

    /// Finalizer, weak handle and cleanups on two objects of one span: the copy follows
    /// every insertion and removal in the list's order (by address, then kind), names
    /// what `inspect` names, and goes away with the last record (removal or sweep).
    func testSpecialsMirrorFollowsTheList() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).withSelfChecks.precise)
        let node = try heap.register(TypeLayout(name: "mirror.Node", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 3) { f in
                f[0] = m.allocate(node); f[1] = m.allocate(node); f[2] = m.allocate(node)
                let (a, b) = (f[0].address, f[1].address)
                XCTAssertNotNil(heap.spanOf(a)); XCTAssertEqual(heap.spanOf(a), heap.spanOf(b), "one span")
                let c1 = m.addCleanup(f[1], argument: f[2]) { _, _ in }
                m.setFinalizer(f[1]) { _, _ in }
                _ = m.makeWeak(f[0])
                let c2 = m.addCleanup(f[0]) { _, _ in }
                m.setFinalizer(f[0]) { _, _ in }
                heap.checkSpecialsInvariants()
                let all = mirror(heap, a)
                let kinds = all.map { ($0.addr, $0.kind) }
                XCTAssertEqual(kinds.map(\.0), [a, a, a, b, b].map { UInt64($0) })
                XCTAssertEqual(kinds.map(\.1), [1, 2, 3, 1, 3], "by address, then kind: finalizer, weak handle, cleanup")
                XCTAssertEqual(all[2].id, UInt64(c2.id))
                XCTAssertEqual(all[4].id, UInt64(c1.id)); XCTAssertEqual(all[4].arg, UInt64(f[2].address))
                let info = heap.inspect(f[0])
                XCTAssertEqual(info.specials.count, 3)
                XCTAssertEqual(info.specials[0], "finalizer")
                XCTAssertEqual(info.specials[1], "weak handle 0x" + String(all[1].arg, radix: 16))
                XCTAssertEqual(info.specials[2], "cleanup #\(c2.id) (argument 0x0)")
                // Removals in the middle and at the end.
                m.setFinalizer(f[0], nil)
                c1.stop()
                heap.checkSpecialsInvariants()
                XCTAssertEqual(mirror(heap, a).map(\.kind), [2, 3, 1])
                c2.stop()
                m.setFinalizer(f[1], nil)
                heap.checkSpecialsInvariants()
                XCTAssertEqual(mirror(heap, a).map(\.kind), [2], "the weak handle is left")
                f[0] = .null
            }
            // The object with the weak handle dies: the sweep drops its record and the copy.
            heap.collect()
            heap.checkSpecialsInvariants()
            heap.specials.lock.withLock { XCTAssertEqual(heap.specials.mirrors, 0) }
        }
    }

    /// A sweep that keeps some records rewrites the copy: a finalizer's object is
    /// revived (its finalizer and weak handle records go, its cleanup stays); a dead
    /// neighbour's records all go.
    func testSweepRewritesTheMirror() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).withSelfChecks.precise)
        let node = try heap.register(TypeLayout(name: "mirror.Node", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            var a: UInt = 0
            m.withFrame(slots: 3) { f in
                f[0] = m.allocate(node); f[1] = m.allocate(node); f[2] = m.allocate(node)
                a = f[0].address
                m.setFinalizer(f[0]) { _, _ in }
                _ = m.makeWeak(f[0])
                m.addCleanup(f[0]) { _, _ in }
                m.addCleanup(f[1]) { _, _ in }
                _ = m.makeWeak(f[2])
                XCTAssertEqual(mirror(heap, a).count, 5)
                f[0] = .null; f[1] = .null
                heap.collect()
                heap.checkSpecialsInvariants()
                XCTAssertEqual(mirror(heap, a).map { [$0.addr, $0.kind] }, [[UInt64(a), 3], [UInt64(f[2].address), 2]])
            }
            heap.waitForFinalizers()
            heap.collect(); heap.collect()
            heap.checkSpecialsInvariants()
            heap.specials.lock.withLock {
                XCTAssertEqual(heap.specials.count, 0)
                XCTAssertEqual(heap.specials.mirrors, 0)
            }
        }
    }

    /// Heap-profile samples are records too (at rate 1 every allocation is one): the
    /// copy holds them, `inspect` leaves them out of the specials, and a heap dropped
    /// with records left frees every copy (`mirrors` back to 0 before the table empties).
    func testProfileRecordsAreMirroredAndLeftOutOfTheSpecials() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, memProfileRate: 1).withSelfChecks.precise)
        let node = try heap.register(TypeLayout(name: "mirror.Node", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                for _ in 0..<600 { let n = m.allocate(node); m.store(n, 0, f[0]); f[0] = n }
                m.setFinalizer(f[0]) { _, _ in }
                heap.checkSpecialsInvariants()
                let recs = mirror(heap, f[0].address).filter { $0.addr == UInt64(f[0].address) }
                XCTAssertEqual(recs.map(\.kind), [1, 5], "finalizer, then the profile sample")
                XCTAssertEqual(heap.inspect(f[0]).specials, ["finalizer"])
                heap.specials.lock.withLock { XCTAssertGreaterThan(heap.specials.mirrors, 1) }
            }
        }
        // The heap's deinit frees the copies (a leak would not show here, but a copy
        // freed twice or left to a reused span would trap in the checks above).
    }

    // MARK: frames

    /// Checked mode: nested frames are listed with their offsets, sizes and roots, in
    /// the table and in JSON; popping drops them; a new attach starts with none.
    func testCheckedModeListsFrames() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, checked: true).precise)
        let node = try heap.register(TypeLayout(name: "mirror.Node", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 3) { a in
                a[0] = m.allocate(node); a[2] = m.allocate(node)
                m.withFrame(slots: 2) { b in
                    b[1] = m.allocate(node)
                    m.withFrame(slots: 0) { _ in
                        m.withFrame(slots: 1) { _ in
                            let s = heap.allocatorState()
                            XCTAssertEqual(s.mutators.count, 1)
                            let mi = s.mutators[0]
                            XCTAssertNil(mi.framesNote)
                            XCTAssertEqual(mi.frames, [.init(offset: 0, slots: 3, roots: 2), .init(offset: 3, slots: 2, roots: 1),
                                                       .init(offset: 5, slots: 0, roots: 0), .init(offset: 5, slots: 1, roots: 0)])
                            XCTAssertEqual(mi.stackDepth, 6)
                            XCTAssertEqual(mi.frames!.reduce(0) { $0 + $1.roots }, mi.liveRoots)
                            let text = s.description
                            XCTAssertTrue(text.contains("\n    frame 0: slots 0..<3 (3 slots, 2 roots)\n    frame 1: slots 3..<5 (2 slots, 1 root)\n    frame 2: slots 5..<5 (0 slots, 0 roots)\n    frame 3: slots 5..<6 (1 slot, 0 roots)\n"), text)
                            let data = try! JSONEncoder().encode(s)
                            let json = String(decoding: data, as: UTF8.self)
                            XCTAssertTrue(json.contains("\"frames\":[{"), json)
                            XCTAssertEqual(try! JSONDecoder().decode(AllocatorState.self, from: data), s)
                            heap.checkInvariants()   // the records tile the stack
                        }
                    }
                }
                XCTAssertEqual(heap.allocatorState().mutators[0].frames, [.init(offset: 0, slots: 3, roots: 2)])
                // Growing the stack past its 256 slots keeps the records (offsets, not addresses).
                m.withFrame(slots: 1000) { big in
                    big[999] = m.allocate(node)
                    XCTAssertEqual(heap.allocatorState().mutators[0].frames,
                                   [.init(offset: 0, slots: 3, roots: 2), .init(offset: 3, slots: 1000, roots: 1)])
                    heap.checkInvariants()
                }
            }
            XCTAssertEqual(heap.allocatorState().mutators[0].frames, [])
            XCTAssertTrue(heap.allocatorState().description.contains("    no frames\n"))
        }
        heap.withMutator { m in
            let f = m.pushFrame(slots: 2)
            XCTAssertEqual(heap.allocatorState().mutators[0].frames, [.init(offset: 0, slots: 2, roots: 0)])
            m.popFrame(f)
        }
    }

    /// Pushes and pops that stop at safepoints (a collection at every safepoint, whose
    /// mark termination checks every invariant with the world stopped, frames
    /// included) and grow the stack: the records always tile it.
    func testFrameRecordsTileTheStackAtEverySafepoint() throws {
        var config = Configuration(gcPercent: nil, checked: true)
        config.gcStress = 7
        let heap = try Heap(configuration: config.withSelfChecks.precise)
        let node = try heap.register(TypeLayout(name: "mirror.Node", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            func nest(_ depth: Int) {
                m.withFrame(slots: depth % 5 * 40) { f in
                    if f.count > 0 { f[f.count - 1] = m.allocate(node) }
                    m.safepoint()
                    if depth < 12 { nest(depth + 1) }
                    m.safepoint()
                }
            }
            for _ in 0..<3 { nest(0) }
            m.withFrame(slots: 1) { _ in heap.checkInvariants() }
        }
        XCTAssertGreaterThan(heap.gcStats().numGC, 3)
    }

    /// Unchecked mode records nothing, and says so in the table and in JSON.
    func testUncheckedModeSaysFramesAreNotRecorded() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        heap.withMutator { m in
            m.withFrame(slots: 2) { _ in
                m.withFrame(slots: 1) { _ in
                    let s = heap.allocatorState()
                    XCTAssertNil(s.mutators[0].frames)
                    XCTAssertEqual(s.mutators[0].framesNote, "frames are recorded in checked mode only")
                    XCTAssertEqual(s.mutators[0].stackDepth, 3)
                    XCTAssertTrue(s.description.contains(" cached spans\n    frames are recorded in checked mode only\n"), s.description)
                    let json = String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
                    XCTAssertTrue(json.contains("\"framesNote\":\"frames are recorded in checked mode only\""), json)
                    XCTAssertFalse(json.contains("\"frames\":"), json)
                    XCTAssertNil(m.state.pointee.debugFrames, "the unchecked push stores no record")
                }
            }
        }
    }

    /// A checked frame popped out of order still traps with the order message (the
    /// records never get ahead of the check).
    func testOutOfOrderPopStillTraps() {
        expectFatal("frames popped out of order") {
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, checked: true).precise)
            let m = heap.attach()
            let a = m.pushFrame(slots: 2)
            _ = m.pushFrame(slots: 1)
            m.popFrame(a)
        }
    }

    /// The fatal report's mutator line gives the failing thread's frames in checked mode.
    func testFatalReportListsCheckedFrames() throws {
        let dir = temporaryDirectory("fatal-frames")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prefix = dir + "/crash"
        let r = runInChild {
            setenv("GODEBUG", "tricolordump=\(prefix)", 1)
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, checked: true).precise)
            heap.withMutator { m in
                m.withFrame(slots: 2) { _ in
                    m.withFrame(slots: 1) { _ in
                        m.withFrame(slots: 0) { _ in runtimeFatal("frames, on purpose") }
                    }
                }
            }
        }
        XCTAssertEqual(r.exitStatus, 2, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        let report = try XCTUnwrap(files.first { $0.hasSuffix(".txt") })
        let text = try String(contentsOfFile: dir + "/" + report, encoding: .utf8)
        XCTAssertTrue(text.contains("stack depth 3 slots of 256, 3 frames (slot+count: 0+2 2+1 3+0) (the failing thread)"), text)
    }
}
