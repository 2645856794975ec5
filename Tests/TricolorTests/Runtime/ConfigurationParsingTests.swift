import Glibc
import XCTest
@_spi(Testing) @testable import Tricolor

/// Environment parsing (GOGC, GOMEMLIMIT, GOMAXPROCS, GODEBUG) against Go's rules, and the
/// range checks of `Configuration`. Values that used to trap are tried in a child process
/// (`runInChild`), so a regression fails one test instead of ending the run.
final class ConfigurationParsingTests: XCTestCase {
    /// Go's largest GOGC (gcPercent is an int32) and our GOMAXPROCS cap (Go 1.9's).
    let maxGCPercent = 2_147_483_647
    let maxGomaxprocs = 1024

    private func assertRejected(_ env: [String: String], naming value: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Configuration.fromEnvironment(env), "\(env)", file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(value), "the message should name '\(value)': \(error)", file: file, line: line)
        }
    }

    // MARK: GOGC

    /// Go treats an empty variable as unset: GOGC="" is the default, 100.
    func testEmptyGOGCIsUnset() throws {
        XCTAssertEqual(try Configuration.fromEnvironment(["GOGC": ""]).gcPercent, 100)
        XCTAssertEqual(try Configuration.fromEnvironment(["GOGC": ""]), Configuration())
        XCTAssertEqual(try Configuration.parseGOGC(""), 100)
    }

    /// A huge GOGC is accepted (Go: effectively off) and clamped so it stays representable:
    /// neither parsing nor the pacer's products with it may overflow.
    func testHugeGOGCIsClampedNotTrapping() throws {
        for v in ["100000000000000", "9223372036854775807", "99999999999999999999999999", String(maxGCPercent)] {
            XCTAssertEqual(try Configuration.fromEnvironment(["GOGC": v]).gcPercent, maxGCPercent, v)
        }
        XCTAssertNil(try Configuration.fromEnvironment(["GOGC": "-99999999999999999999999999"]).gcPercent)
        XCTAssertEqual(try Configuration.fromEnvironment(["GOGC": "2147483646"]).gcPercent, 2_147_483_646)
        for bad in ["1e14", "0x10", "100 ", "+-1", "-", ""] where !bad.isEmpty {
            assertRejected(["GOGC": bad], naming: bad)
        }
    }

    /// A heap made from a huge GOGC starts, allocates and collects without trapping.
    func testHeapWithHugeGOGCDoesNotTrap() {
        for settings in [["GOGC": "100000000000000"], ["GOGC": "99999999999999999999"]] {
            let r = runInChild {
                guard var c = try? Configuration.fromEnvironment(settings) else { _exit(3) }
                c.markWorkers = 0
                c.reservedAddressSpace = 64 << 20
                guard let heap = try? Heap(configuration: c),
                      let t = try? heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0]))
                else { _exit(4) }
                heap.withMutator { m in
                    for _ in 0..<10_000 { _ = m.allocate(t) }
                }
                heap.collect()
            }
            XCTAssertEqual(r.exitStatus, 0, "\(settings): signal \(String(describing: r.signal)):\n\(r.stderr)")
        }
    }

    /// gcPercent set in code is normalized as Go's SetGCPercent: negative = off, huge = max.
    func testGCPercentInCodeIsNormalized() {
        XCTAssertNil(Configuration(gcPercent: -1).gcPercent)
        XCTAssertNil(Configuration(gcPercent: Int.min).gcPercent)
        XCTAssertEqual(Configuration(gcPercent: Int.max).gcPercent, maxGCPercent)
        var c = Configuration()
        c.gcPercent = 1 << 50
        XCTAssertEqual(c.gcPercent, maxGCPercent)
        c.gcPercent = 0
        XCTAssertEqual(c.gcPercent, 0)
    }

    func testHeapWithNegativeGCPercentInCodeDoesNotTrap() {
        let r = runInChild {
            guard let heap = try? Heap(configuration: Configuration(gcPercent: -5, markWorkers: 0, reservedAddressSpace: 64 << 20))
            else { _exit(4) }
            heap.collect()
        }
        XCTAssertEqual(r.exitStatus, 0, "signal \(String(describing: r.signal)):\n\(r.stderr)")
    }

    // MARK: GOMEMLIMIT

    /// Go's parseByteCount rejects a count that overflows int64, before or after the
    /// unit; it must not be taken as "no limit".
    func testGOMEMLIMITOverflowIsRejected() {
        for v in ["99999999TiB", "8388608TiB", "9223372036854775808", "9223372036854775808B",
                  "99999999999999999999999", "9007199254740992KiB", "8796093022208MiB", "8589934592GiB"] {
            assertRejected(["GOMEMLIMIT": v], naming: v)
        }
    }

    func testGOMEMLIMITAcceptsGoSyntax() throws {
        let cases: [(String, Int?)] = [
            ("", nil), ("off", nil), ("0", 0), ("1", 1), ("1B", 1), ("5KiB", 5 << 10), ("5MiB", 5 << 20),
            ("5GiB", 5 << 30), ("5TiB", 5 << 40), ("8388607TiB", 8_388_607 << 40),
            ("9223372036854775807", nil),      // math.MaxInt64: Go's "no limit"
            ("9223372036854775806B", 9_223_372_036_854_775_806),
        ]
        for (v, want) in cases {
            XCTAssertEqual(try Configuration.fromEnvironment(["GOMEMLIMIT": v]).memoryLimit, want, v)
        }
        for bad in ["1.5GiB", "1 GiB", "1GB", "1kiB", "KiB", "B", "-1", "-1MiB", "1iB", "0x10", "off2"] {
            assertRejected(["GOMEMLIMIT": bad], naming: bad)
        }
    }

    // MARK: GOMAXPROCS

    func testGOMAXPROCSParsing() throws {
        XCTAssertEqual(try Configuration.fromEnvironment(["GOMAXPROCS": "4"]).gomaxprocs, 4)
        XCTAssertNil(try Configuration.fromEnvironment(["GOMAXPROCS": ""]).gomaxprocs)   // empty = unset, as in Go
        for v in ["1024", "1025", "1000000", "9223372036854775807", "99999999999999999999999"] {
            XCTAssertEqual(try Configuration.fromEnvironment(["GOMAXPROCS": v]).gomaxprocs, maxGomaxprocs, v)
        }
        for bad in ["0", "-1", "-99999999999999999999", "abc", "1.5", " 4", "4 "] {
            assertRejected(["GOMAXPROCS": bad], naming: bad)
        }
    }

    /// A huge gomaxprocs set in code is clamped (like GOMAXPROCS), so creating a heap with
    /// it neither traps nor hangs.
    func testHugeGomaxprocsInCodeIsClamped() {
        XCTAssertEqual(Configuration(gomaxprocs: 1 << 40).gomaxprocs, maxGomaxprocs)
        XCTAssertEqual(Configuration(gomaxprocs: Int.max).gomaxprocs, maxGomaxprocs)
        XCTAssertEqual(Configuration(gomaxprocs: 3).gomaxprocs, 3)
        var c = Configuration()
        c.gomaxprocs = 1 << 40
        XCTAssertEqual(c.gomaxprocs, maxGomaxprocs)
        let r = runInChild(timeout: 300) {
            guard let heap = try? Heap(configuration: Configuration(markWorkers: 0, gomaxprocs: 1 << 40, reservedAddressSpace: 64 << 20))
            else { _exit(4) }
            heap.collect()
        }
        XCTAssertEqual(r.exitStatus, 0, "signal \(String(describing: r.signal)):\n\(r.stderr)")
    }

    // MARK: range checks

    /// Every numeric field out of range is rejected by Heap.init, naming the value.
    func testOutOfRangeFieldsAreRejectedNamingTheValue() {
        let cases: [(Configuration, String)] = [
            (Configuration(gomaxprocs: 0), "0"),
            (Configuration(gomaxprocs: -7), "-7"),
            (Configuration(markWorkers: -1), "-1"),
            (Configuration(markWorkers: 65), "65"),
            (Configuration(markWorkers: Int.max), String(Int.max)),
            (Configuration(memoryLimit: -3), "-3"),
            (Configuration(memProfileRate: -9), "-9"),
            (Configuration(reservedAddressSpace: 0), "0"),
            (Configuration(reservedAddressSpace: -(1 << 40)), String(-(1 << 40))),
            (Configuration(reservedAddressSpace: 1 << 50), String(1 << 50)),
            (Configuration(reservedAddressSpace: Int.max), String(Int.max)),
        ]
        for (config, value) in cases {
            XCTAssertThrowsError(try Heap(configuration: config), "\(config)") { error in
                XCTAssertTrue(error is ConfigurationError, "\(error)")
                XCTAssertTrue("\(error)".contains(value), "should name \(value): \(error)")
            }
        }
    }

    // MARK: GODEBUG

    func testGODEBUGValuesPastIntRange() throws {
        XCTAssertTrue(try Configuration.fromEnvironment(["GODEBUG": "gctrace=99999999999999999999"]).gctrace)
        XCTAssertEqual(try Configuration.fromEnvironment(["GODEBUG": "memprofilerate=9223372036854775807"]).memProfileRate, Int.max)
        assertRejected(["GODEBUG": "memprofilerate=99999999999999999999"], naming: "99999999999999999999")
        assertRejected(["GODEBUG": "memprofilerate=-1"], naming: "memprofilerate=-1")
    }
}
