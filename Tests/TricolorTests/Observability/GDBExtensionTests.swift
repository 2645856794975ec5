@_spi(Testing) @testable import Tricolor
// The gdb extension (tools/gdb/tricolor-gdb.py, embedded in .debug_gdb_scripts) against
// a core file: a child process builds two heaps, an unchecked one (whose objects include
// one with a finalizer, a weak handle and a cleanup) and a checked one (whose mutator
// holds nested frames), parks each mutator in a blocking region, prints what the
// in-process API says (allocatorState, inspect, memStats) and waits; `gcore` writes its
// core; `gdb -batch` auto-loads the script from the test binary and must print the
// same: the specials line read from the spans' C copies, the frames from the checked
// mutator's records. Follows Go's runtime-gdb.py and its runtime-gdb_test.go.
// Skips, saying why, when gdb or gcore is not installed.
import XCTest
import Foundation
import Glibc
import CTricolor

final class GDBExtensionTests: WatchdogTestCase {

    static func which(_ tool: String) -> String? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where access(dir + "/" + tool, X_OK) == 0 { return dir + "/" + tool }
        return nil
    }

    static func run(_ path: String, _ args: [String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The repository root (this file is Tests/TricolorTests/Observability/…).
    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// The embedded copy of the script is the script (Scripts/embed-gdb-script.py --check).
    func testEmbeddedScriptIsCurrent() throws {
        guard let py = GDBExtensionTests.which("python3") else { throw XCTSkip("python3 is not installed") }
        let r = try GDBExtensionTests.run(py, [GDBExtensionTests.root + "/Scripts/embed-gdb-script.py", "--check"])
        XCTAssertEqual(r.status, 0, r.out)
    }

    /// Splits gdb's output at "==name==" lines.
    static func sections(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        var name: String? = nil
        var body = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("=="), line.hasSuffix("=="), line.count > 4 {
                if let n = name { out[n] = body }
                name = String(line.dropFirst(2).dropLast(2))
                body = ""
            } else if name != nil {
                body += line + "\n"
            }
        }
        if let n = name { out[n] = body }
        return out
    }

    func testGDBOnACoreFileAgreesWithTheInProcessAPI() throws {
        guard let gdb = GDBExtensionTests.which("gdb"), let gcore = GDBExtensionTests.which("gcore") else {
            print("GDBExtensionTests: skipped: gdb or gcore is not installed (apt-get install gdb)")
            throw XCTSkip("gdb or gcore is not installed (apt-get install gdb)")
        }
        let dir = temporaryDirectory("gdb")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expected = dir + "/expected.txt"
        let addressesFile = dir + "/addresses.txt"
        let pid = fork()
        if pid == 0 {
            GDBExtensionTests.childBody(expected: expected, addressesFile: addressesFile)
            _exit(0)
        }
        defer { kill(pid, SIGKILL); var st: Int32 = 0; waitpid(pid, &st, 0) }
        // Wait for the child to print its state (generous: a loaded machine).
        var waited = 0
        while access(expected, F_OK) != 0 {
            usleep(20_000); waited += 1
            XCTAssertLessThan(waited, 3000, "the child never got ready"); if waited >= 3000 { return }
        }
        let core = dir + "/core"
        let g = try GDBExtensionTests.run(gcore, ["-o", core, "\(pid)"])
        XCTAssertEqual(g.status, 0, "gcore: \(g.out)")
        let want = GDBExtensionTests.sections(try String(contentsOfFile: expected, encoding: .utf8))
        // The first line: the two heaps' indices among the live heaps (gdb's N).
        var lines = try String(contentsOfFile: addressesFile, encoding: .utf8).split(separator: "\n").map(String.init)
        let indices = lines.removeFirst().split(separator: " ").map(String.init)
        let (plain, checked) = (indices[0], indices[1])
        let addresses = lines
        var exe = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &exe, exe.count - 1)
        XCTAssertGreaterThan(n, 0)
        var args = ["-batch", "-nx", "-iex", "set auto-load safe-path /", String(decoding: exe[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self), core + ".\(pid)",
                    "-ex", "echo ==heap==\\n", "-ex", "tricolor heap \(plain)",
                    "-ex", "echo ==mutators==\\n", "-ex", "tricolor mutators \(plain)",
                    "-ex", "echo ==memstats==\\n", "-ex", "tricolor memstats \(plain)",
                    "-ex", "echo ==spans==\\n", "-ex", "tricolor spans 5 \(plain)",
                    "-ex", "echo ==checked heap==\\n", "-ex", "tricolor heap \(checked)",
                    "-ex", "echo ==checked mutators==\\n", "-ex", "tricolor mutators \(checked)"]
        for (i, a) in addresses.enumerated() { args += ["-ex", "echo ==object \(i)==\\n", "-ex", "tricolor object \(a)"] }
        args += ["-ex", "echo ==end==\\n"]
        let out = try GDBExtensionTests.run(gdb, args)
        let got = GDBExtensionTests.sections(out.out)
        XCTAssertNotNil(got["end"], "gdb did not run every command (did the script auto-load?):\n\(out.out)")
        XCTAssertEqual(got["heap"], want["heap"])
        XCTAssertEqual(got["mutators"].map { "mutators:\n" + $0.components(separatedBy: "mutators:\n").last! },
                       want["heap"].map { "mutators:\n" + $0.components(separatedBy: "mutators:\n").last! })
        // MemStats fields gdb can read (the counters).
        let gm = Dictionary(uniqueKeysWithValues: (got["memstats"] ?? "").split(separator: "\n").compactMap { l -> (String, String)? in
            let p = l.split(separator: " "); return p.count >= 2 ? (String(p[0]), String(p[1])) : nil })
        for line in (want["memstats"] ?? "").split(separator: "\n") {
            let p = line.split(separator: " ")
            XCTAssertEqual(gm[String(p[0])], String(p[1]), "MemStats.\(p[0])")
        }
        XCTAssertEqual(got["spans"]?.split(separator: "\n").last.map(String.init), want["spans"]?.trimmingCharacters(in: .newlines))
        for i in 0..<addresses.count {
            XCTAssertEqual(got["object \(i)"], want["object \(i)"], "address \(addresses[i])")
        }
        // Objects 9 and 10 (its start and an interior address) carry a finalizer, a weak
        // handle and a cleanup: the specials line is not the empty one.
        for i in [9, 10] {
            let line = want["object \(i)"]?.split(separator: "\n").first { $0.hasPrefix("  specials ") }.map(String.init) ?? ""
            XCTAssertTrue(line.hasPrefix("  specials finalizer, weak handle 0x") && line.hasSuffix(", cleanup #1 (argument \(addresses[11]))"), line)
            XCTAssertEqual(got["object \(i)"]?.split(separator: "\n").first { $0.hasPrefix("  specials ") }.map(String.init), line)
        }
        // The checked heap: its mutators' frames, as allocatorState lists them.
        XCTAssertEqual(got["checked heap"], want["checked heap"])
        XCTAssertEqual(got["checked mutators"].map { "mutators:\n" + $0.components(separatedBy: "mutators:\n").last! },
                       want["checked heap"].map { "mutators:\n" + $0.components(separatedBy: "mutators:\n").last! })
        XCTAssertTrue(want["checked heap"]?.contains("    frame 0: slots 0..<3 (3 slots, 2 roots)\n    frame 1: slots 3..<5 (2 slots, 1 root)\n    frame 2: slots 5..<6 (1 slot, 0 roots)\n") == true,
                      want["checked heap"] ?? "")
        XCTAssertTrue(want["heap"]?.contains("    frames are recorded in checked mode only\n") == true, want["heap"] ?? "")
    }

    /// The child: two heaps, a mutator thread for each that allocates and then blocks
    /// holding its roots, and the main thread printing the in-process view, then
    /// waiting for gcore.
    static func childBody(expected: String, addressesFile: String) {
        let heap = try! Heap(configuration: Configuration(gcPercent: nil, reservedAddressSpace: 1 << 30, memProfileRate: 0).precise)
        let checkedHeap = try! Heap(configuration: Configuration(gcPercent: nil, checked: true, reservedAddressSpace: 1 << 30, memProfileRate: 0).precise)
        let checkedNode = try! checkedHeap.register(TypeLayout(name: "gdb.Checked", size: 16, pointerWords: [0]))
        let node = try! heap.register(TypeLayout(name: "gdb.Node", size: 48, pointerWords: [0, 3]))
        let leaf = try! heap.register(TypeLayout(name: "gdb.Leaf", size: 24, pointerWords: []))
        let holder = try! heap.register(TypeLayout(name: "gdb.Holder", size: 8, pointerWords: [0]))
        let ready = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        ready.initialize(to: 0)
        let addrs = UnsafeMutablePointer<UInt>.allocate(capacity: 16)
        addrs.initialize(repeating: 0, count: 16)
        let readyBits = UInt(bitPattern: ready), addrBits = UInt(bitPattern: addrs)
        let t = Thread {
            let ready = UnsafeMutablePointer<UInt>(bitPattern: readyBits)!
            let addrs = UnsafeMutablePointer<UInt>(bitPattern: addrBits)!
            heap.withMutator { m in
                m.withFrame(slots: 7) { f in
                    // Six swept 64-byte spans with free slots in their central list (one
                    // reachable object in each), for the refill at the end to stash.
                    let perSpan = SizeClassTable.pageSize / 64
                    f[6] = m.allocateArray(holder, count: 6)
                    for i in 0..<(6 * perSpan) {
                        let r = m.allocateBytes(64)
                        if i % perSpan == 0 { m.store(f[6], i / perSpan, r) }
                    }
                    heap.collect()
                    for _ in 0..<300 { let n = m.allocate(node); m.store(n, 0, f[0]); f[0] = n; _ = m.allocate(leaf) }
                    f[1] = m.allocateBytes(100_000)
                    f[2] = m.allocateArray(node, count: 5)
                    f[3] = m.allocate(leaf)
                    addrs[0] = f[0].address; addrs[1] = f[0].address + 24; addrs[2] = f[1].address + 5000
                    addrs[3] = f[2].address; addrs[4] = f[3].address; addrs[5] = f[0].address + 48
                    addrs[6] = UInt(bitPattern: m.state.pointee.stack) + 8; addrs[7] = 0x1000
                    addrs[8] = heap.arenaBase + (1 << 29)
                    // An object with a finalizer, a weak handle and a cleanup (whose
                    // argument, f[5], is a root while the cleanup waits).
                    f[4] = m.allocate(node)
                    f[5] = m.allocate(leaf)
                    m.setFinalizer(f[4]) { _, _ in }
                    _ = m.makeWeak(f[4])
                    m.addCleanup(f[4], argument: f[5]) { _, _ in }
                    addrs[9] = f[4].address; addrs[10] = f[4].address + 8; addrs[11] = f[5].address
                    // A refill that caches one of the six and stashes the next ones
                    // (MCache.stash): gdb must count them as swept partial spans.
                    _ = m.allocateBytes(64)
                    precondition(m.state.pointee.mcache.pointee.stashCount[Int(SpanClass(sizeClass: SizeClassTable.sizeToClass(64), noscan: true).raw)] > 0,
                                 "gdb test: the refill stashed no span")
                    m.blocking {
                        tc_store_release(UnsafeMutableRawPointer(ready), 1)
                        while true { sleep(1000) }
                    }
                }
            }
        }
        t.start()
        while tc_load_acquire(UnsafeRawPointer(ready)) == 0 { usleep(1000) }
        // The checked heap's mutator: nested frames (3 slots with 2 roots, 2 with 1,
        // 1 with none), blocked inside the innermost.
        let checkedReady = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        checkedReady.initialize(to: 0)
        let checkedReadyBits = UInt(bitPattern: checkedReady)
        let t2 = Thread {
            let ready = UnsafeMutablePointer<UInt>(bitPattern: checkedReadyBits)!
            checkedHeap.withMutator { m in
                m.withFrame(slots: 3) { a in
                    a[0] = m.allocate(checkedNode); a[2] = m.allocate(checkedNode)
                    m.withFrame(slots: 2) { b in
                        b[1] = m.allocate(checkedNode)
                        m.withFrame(slots: 1) { _ in
                            m.blocking {
                                tc_store_release(UnsafeMutableRawPointer(ready), 1)
                                while true { sleep(1000) }
                            }
                        }
                    }
                }
            }
        }
        t2.start()
        while tc_load_acquire(UnsafeRawPointer(checkedReady)) == 0 { usleep(1000) }
        // Wait for the heaps to be quiet (no background thread still growing or
        // scavenging, the finalizer thread idle): two snapshots 50 ms apart that agree.
        func quiet(_ h: Heap) -> AllocatorState {
            var state = h.allocatorState()
            while true {
                usleep(50_000)
                let again = h.allocatorState()
                if again == state { return state }
                state = again
            }
        }
        let state = quiet(heap)
        let checkedState = quiet(checkedHeap)
        let listed = Heap.debugListedHeaps()
        let plainIndex = listed.firstIndex(of: Unmanaged.passUnretained(heap).toOpaque())!
        let checkedIndex = listed.firstIndex(of: Unmanaged.passUnretained(checkedHeap).toOpaque())!
        var text = "==heap==\n" + state.description
        text += "==checked heap==\n" + checkedState.description
        let ms = heap.memStats()
        // With GOGC off and no memory limit, memStats() reports Go 1.19's goal near
        // MaxInt64, from figures gdb cannot read: gdb says "none" (checked below).
        let goalOff = ms.nextGC > UInt64(Int64.max) - (1 << 40)
        text += "==memstats==\nHeapSys \(ms.heapSys)\nHeapInuse \(ms.heapInuse)\nHeapReleased \(ms.heapReleased)\nStackInuse \(ms.stackInuse)\n\(goalOff ? "NextGC none\n" : "NextGC \(ms.nextGC)\n")NumGC \(ms.numGC)\n"
        let n5 = state.spanClasses.filter { $0.sizeClass == 5 }.reduce(0) { $0 + $1.spans }
        text += "==spans==\n\(n5) span\(n5 == 1 ? "" : "s") of size class 5\n"
        var list: [String] = ["\(plainIndex) \(checkedIndex)"]
        for i in 0..<12 {
            text += "==object \(i)==\n" + heap.inspect(addrs[i]).description
            list.append("0x" + String(addrs[i], radix: 16))
        }
        text += "==end==\n"
        try! list.joined(separator: "\n").write(toFile: addressesFile, atomically: true, encoding: .utf8)
        try! text.write(toFile: expected + ".tmp", atomically: false, encoding: .utf8)
        rename(expected + ".tmp", expected)
        while true { pause() }
    }
}
