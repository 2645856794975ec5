import Foundation
import XCTest
@_spi(Testing) @testable import Tricolor

// The pacer, driven through simulated cycles (the approach of Go's TestGcPacer in
// runtime/mgcpacer_test.go): each cycle starts at the pacer's trigger, marks in 500 µs
// steps in which an idealized assist mechanism holds the scan/allocation ratio to the
// pacer's assist ratio, and ends by handing the pacer what it measured. Allocation and
// scan rates are chosen per cycle, so the trajectory of goal, trigger, peak and GC
// utilization is exact and repeatable: no clocks, no threads. These replace the old
// tests that ran a real heap and measured the peak against the goal, which failed when
// the machine was busy.

/// One cycle's simulated conditions.
struct SimCycle {
    var allocRate: Double       // KiB per CPU-ms
    var scanRate: Double        // KiB per CPU-ms
    var growthRate: Double      // live heap growth factor over the cycle
    var scannableFrac: Double   // share of new allocation that is scannable
    var stackBytes: UInt
}

/// What one simulated cycle did.
struct SimResult: CustomStringConvertible {
    var cycle: Int
    var heapMarked: UInt        // live heap at the start (the last cycle's mark)
    var trigger: UInt           // where the cycle started
    var peak: UInt              // heapLive when marking ended
    var goal: UInt              // the goal of the cycle
    var gcUtilization: Double   // background + assists, as a share of all CPUs
    var firstAssistRatio: Double
    var lastAssistRatio: Double

    var goalRatio: Double { Double(peak) / Double(goal) }
    var triggerRatio: Double { Double(trigger - heapMarked) / Double(goal - heapMarked) }
    var runway: Double { Double(goal) - Double(trigger) }

    var description: String {
        "\(cycle) \(String(format: "%.1f", gcUtilization * 100))% \(heapMarked)->\(trigger)->\(peak) (goal \(goal), ratio \(String(format: "%.3f", goalRatio)))"
    }
}

/// A stream of per-cycle values (Go's float64Stream), built from combinators.
struct Stream {
    let next: () -> Double

    static func constant(_ c: Double) -> Stream { Stream { c } }

    /// From 0 to `height` over `length` cycles, then `height`.
    static func ramp(_ height: Double, _ length: Int) -> Stream {
        var cycle = 0
        return Stream {
            let h = height * Double(cycle) / Double(length)
            if cycle < length { cycle += 1 }
            return h
        }
    }

    /// `amp` once, then 0.
    static func unit(_ amp: Double) -> Stream {
        var dropped = false
        return Stream {
            if dropped { return 0 }
            dropped = true
            return amp
        }
    }

    /// A sine of amplitude `amp` with the given period in cycles.
    static func oscillate(_ amp: Double, _ phase: Double, _ period: Int) -> Stream {
        var cycle = 0
        return Stream {
            let p = Double(cycle) / Double(period) * 2 * Double.pi + phase
            cycle = (cycle + 1) % period
            return sin(p) * amp
        }
    }

    /// Uniform in [−amp, amp) from a seeded generator (SplitMix64).
    static func random(_ amp: Double, seed: UInt64) -> Stream {
        var state = seed
        return Stream {
            state &+= 0x9e3779b97f4a7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
            z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
            z ^= z >> 31
            return (Double(z >> 11) / Double(1 << 53) - 0.5) * 2 * amp
        }
    }

    /// 0 for `cycles` cycles, then this stream.
    func delay(_ cycles: Int) -> Stream {
        var zeroes = 0
        let f = next
        return Stream {
            if zeroes < cycles { zeroes += 1; return 0 }
            return f()
        }
    }

    func offset(_ amt: Double) -> Stream { let f = next; return Stream { f() + amt } }
    func sum(_ others: Stream...) -> Stream {
        let f = next
        let gs = others.map(\.next)
        return Stream { gs.reduce(f()) { $0 + $1() } }
    }
    func min(_ m: Double) -> Stream { let f = next; return Stream { Swift.max(m, f()) } }
    func limit(_ lo: Double, _ hi: Double) -> Stream { let f = next; return Stream { Swift.min(hi, Swift.max(lo, f())) } }
    func quantize(_ mult: Double) -> Stream {
        let f = next
        return Stream {
            let r = f() / mult
            return (r < 0 ? r.rounded(.up) : r.rounded(.down)) * mult
        }
    }
}

/// A simulated program: its settings, its rates per cycle, and how to check each cycle.
struct PacerSimulation {
    var gcPercent: Int? = 100
    var memoryLimit = Int.max
    var globalsBytes: UInt = 32 << 10
    var nCores = 8
    var allocRate = Stream.constant(33)
    var scanRate = Stream.constant(1024)
    var growthRate = Stream.constant(2).sum(.ramp(-1, 12))
    var scannableFrac = Stream.constant(1)
    var stackBytes = Stream.constant(8192)
    var length = 50
    /// Memory the runtime maps besides the heap (non-heap overhead), per cycle; the
    /// memory-limit goal subtracts it. Go's simulation has none.
    var nonHeapBytes: UInt = 0
    /// Called after each revise step of cycle `i` (0-based) with the pacer and the step
    /// number; may change settings mid-cycle (it must then commit, as the runtime does).
    var duringMark: ((_ cycle: Int, _ step: Int, _ pacer: inout Pacer, _ heapLive: UInt) -> Void)? = nil

    static let initialHeapBytes: UInt = 256 << 10
    /// Simulated time between revisions of the assist ratio, and the KiB/CPU-ms → bytes
    /// per step conversion (Go: revisePeriod, rateConv).
    static let revisePeriodNs = 500_000.0
    static let rateConv = 1024 * revisePeriodNs / 1_000_000

    func run() -> [SimResult] {
        var pacer = Pacer(gcPercent: gcPercent, memoryLimit: memoryLimit)
        var heapLive: UInt = 0
        var heapScan: UInt = 0
        var blackLast: UInt = 0
        var results: [SimResult] = []
        func memory(_ live: UInt) -> Pacer.MemoryInputs {
            Pacer.MemoryInputs(mappedReady: live + nonHeapBytes, heapFree: 0, heapAlloc: live)
        }
        for i in 0..<length {
            let alloc = allocRate.min(0.0001).next()
            let scan = scanRate.min(0.0001).next()
            let growth = growthRate.min(0.0001).next()
            let frac = scannableFrac.limit(0, 1).next()
            let stack = UInt(stackBytes.quantize(2048).min(0).next())

            // Start the cycle at the trigger (Go's test StartCycle).
            pacer.memory = memory(heapLive)
            var trigger = pacer.trigger().trigger
            if pacer.heapMarked > trigger { trigger = pacer.heapMarked }
            pacer.globalsScan = globalsBytes
            heapScan += UInt(Double(trigger - pacer.heapMarked) * frac)
            heapLive = trigger
            pacer.memory = memory(heapLive)
            pacer.startCycle(heapLive: heapLive)
            func progress(_ work: UInt) -> Pacer.MarkProgress {
                Pacer.MarkProgress(heapLive: heapLive, heapScan: heapScan, scanWorkDone: work, maxStackScan: stack)
            }
            var ratio = pacer.revise(progress(0)).workPerByte
            let firstRatio = ratio

            let nextHeapMarked: UInt = i == 0 ? PacerSimulation.initialHeapBytes
                : UInt(Double(pacer.heapMarked - blackLast) * growth)
            var globalsLeft = globalsBytes, stackLeft = stack
            var heapLeft = UInt(Double(nextHeapMarked) * frac)
            var heapWork: UInt = 0, stackWork: UInt = 0, globalsWork: UInt = 0
            func doWork(_ w: UInt) -> UInt {
                var w = w, done: UInt = 0
                for k in 0..<3 {
                    let take = Swift.min(w, [globalsLeft, stackLeft, heapLeft][k])
                    switch k {
                    case 0: globalsLeft -= take; globalsWork += take
                    case 1: stackLeft -= take; stackWork += take
                    default: heapLeft -= take; heapWork += take
                    }
                    w -= take; done += take
                }
                return done
            }
            var gcDuration = 0.0, assistTime = 0.0
            var black: UInt = 0
            var step = 0
            while globalsLeft + stackLeft + heapLeft > 0 {
                // Assists hold scanned/allocated to the assist ratio; never below the
                // background workers' share.
                let u = Swift.max(ratio * alloc / (ratio * alloc + scan), Tuning.goalUtilization)
                let cores = Double(nCores)
                let bytesScanned = UInt(scan * PacerSimulation.rateConv * cores * u)
                let bytesAllocated = UInt(alloc * PacerSimulation.rateConv * cores * (1 - u))
                let scanned = doWork(bytesScanned)
                var elapsed = PacerSimulation.revisePeriodNs
                var allocated = bytesAllocated
                if scanned < bytesScanned {
                    // The cycle ended within this step.
                    elapsed = Double(scanned) * PacerSimulation.revisePeriodNs / (scan * PacerSimulation.rateConv * cores * u)
                    allocated = UInt(alloc * PacerSimulation.rateConv * elapsed / PacerSimulation.revisePeriodNs * cores * (1 - u))
                }
                heapLive += allocated
                heapScan += UInt(Double(allocated) * frac)
                pacer.memory = memory(heapLive)
                ratio = pacer.revise(progress(heapWork + stackWork + globalsWork)).workPerByte
                duringMark?(i, step, &pacer, heapLive)
                if duringMark != nil { ratio = pacer.revise(progress(heapWork + stackWork + globalsWork)).workPerByte }
                assistTime += elapsed * cores * (u - Tuning.goalUtilization)
                gcDuration += elapsed
                black += allocated
                step += 1
            }
            results.append(SimResult(
                cycle: i + 1, heapMarked: pacer.heapMarked, trigger: pacer.triggered, peak: heapLive,
                goal: pacer.heapGoal, gcUtilization: assistTime / (gcDuration * Double(nCores)) + Tuning.goalUtilization,
                firstAssistRatio: firstRatio, lastAssistRatio: ratio))

            // End the cycle (Go's test EndCycle: endCycle, resetLive, commit).
            let marked = nextHeapMarked + black
            pacer.endCycle(Pacer.CycleResult(
                heapLive: heapLive, heapMarked: marked, heapScanWork: heapWork, stackScanWork: stackWork,
                globalsScan: globalsBytes, assistTimeNs: UInt64(assistTime), markDurationNs: UInt64(gcDuration), procs: nCores))
            heapLive = marked
            heapScan = heapWork
            pacer.memory = memory(heapLive)
            pacer.commit(isSweepDone: false, heapLive: heapLive)
            pacer.checkInvariants()
            blackLast = black
        }
        return results
    }
}

final class PacerSimulationTests: XCTestCase {
    /// Run `sim`; check every cycle with Go's general checks and `check`; print the
    /// trajectory on failure.
    @discardableResult
    private func simulate(_ sim: PacerSimulation, file: StaticString = #filePath, line: UInt = #line,
                          _ check: (_ c: [SimResult], _ fail: (String) -> Void) -> Void) -> [SimResult] {
        let results = sim.run()
        var failures: [String] = []
        for n in 1...results.count {
            let c = Array(results.prefix(n))
            let last = c[n - 1]
            if last.gcUtilization < 0 || last.gcUtilization > 1 { failures.append("cycle \(n): utilization \(last.gcUtilization)") }
            if last.trigger > last.goal { failures.append("cycle \(n): trigger \(last.trigger) above the goal \(last.goal)") }
            check(c) { failures.append("cycle \(n): " + $0) }
        }
        if !failures.isEmpty {
            XCTFail(failures.prefix(12).joined(separator: "\n") + "\ntrajectory:\n" + results.map(\.description).joined(separator: "\n"),
                    file: file, line: line)
        }
        return results
    }

    private func inRange(_ name: String, _ v: Double, _ lo: Double, _ hi: Double, _ fail: (String) -> Void) {
        if v < lo || v > hi { fail("\(name) \(v) not in [\(lo), \(hi)]") }
    }

    private func near(_ name: String, _ v: Double, _ target: Double, _ eps: Double, _ fail: (String) -> Void) {
        inRange(name, v, target - eps, target + eps, fail)
    }

    /// The memory-limit goal's headroom for a goal near `limit` (Go 1.21: 3%, ≥ 1 MiB).
    private func limitGoal(_ limit: UInt) -> UInt {
        let headroom = max(limit / 100 * Tuning.memoryLimitHeadroomPercent, Tuning.memoryLimitHeadroom)
        return limit - headroom
    }

    // MARK: GOGC alone

    /// A heap grows to a few MiB and stays there with constant rates: within 25 cycles
    /// marking settles at the 25% goal with no assists, ending within 5% of the goal.
    func testSteadyState() {
        simulate(PacerSimulation()) { c, fail in
            let n = c.count
            if n >= 25 {
                near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, 0.005, fail)
                near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
                inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
                // Settled: the goal is GOGC=100's (live + live + stacks + globals).
                let want = Double(c[n - 1].heapMarked) * 2
                inRange("goal / 2×live", Double(c[n - 1].goal) / want, 1.0, 1.02, fail)
                inRange("trigger ratio", c[n - 1].triggerRatio, 0.7, 0.95, fail)
            }
        }
    }

    /// The same with a large stack and with large globals: both count toward GOGC's
    /// goal, and the pacer still settles.
    func testSteadyStateWithBigStacksAndGlobals() {
        var stacks = PacerSimulation()
        stacks.allocRate = .constant(132)
        stacks.stackBytes = Stream.constant(2048).sum(.ramp(Double(128 << 20), 8))
        var globals = PacerSimulation()
        globals.allocRate = .constant(132)
        globals.globalsBytes = 128 << 20
        for sim in [stacks, globals] {
            simulate(sim) { c, fail in
                let n = c.count
                if n >= 25 {
                    near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, 0.005, fail)
                    near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
                    inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
                }
            }
        }
    }

    /// The allocation rate triples (and, heavier, grows elevenfold) at cycle 50: the
    /// pacer settles before the step and again within 25 cycles after it.
    func testStepInAllocationRate() {
        for (step, name) in [(66.0, "×3"), (330.0, "×11")] {
            var sim = PacerSimulation()
            sim.allocRate = Stream.constant(33).sum(Stream.ramp(step, 1).delay(50))
            sim.length = 100
            let r = simulate(sim) { c, fail in
                let n = c.count
                if (n >= 25 && n < 50) || n >= 75 {
                    near("utilization change (\(name))", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
                    inRange("goal ratio (\(name))", c[n - 1].goalRatio, 0.95, 1.05, fail)
                }
            }
            // The step makes mutators allocate faster relative to marking: once settled,
            // a longer runway (an earlier trigger) relative to the goal.
            XCTAssertGreaterThan(r[99].runway / Double(r[99].goal), r[49].runway / Double(r[49].goal) * 1.5,
                                 "runway before/after the step \(name)")
        }
    }

    /// The scannable share of the heap jumps for one cycle: the pacer recovers.
    func testStepInScannableFraction() {
        var sim = PacerSimulation()
        sim.allocRate = .constant(128)
        sim.scannableFrac = Stream.constant(0.2).sum(Stream.unit(0.5).delay(50))
        sim.length = 100
        simulate(sim) { c, fail in
            let n = c.count
            if (n >= 25 && n < 50) || n >= 75 {
                near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
                inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
            }
        }
    }

    /// An oscillating, then a jittery allocation rate: the pacer keeps close to the goal
    /// and utilization stays near 25–30%.
    func testVaryingAllocationRate() {
        var osc = PacerSimulation()
        osc.allocRate = Stream.oscillate(13, 0, 8).offset(67)
        var jitter = PacerSimulation()
        jitter.allocRate = Stream.random(13, seed: 0xf).offset(132)
        jitter.growthRate = Stream.constant(2).sum(.ramp(-1, 12), .random(0.01, seed: 0xe))
        for sim in [osc, jitter] {
            simulate(sim) { c, fail in
                let n = c.count
                if n > 12 {
                    inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
                    inRange("GC utilization", c[n - 1].gcUtilization, 0.25, 0.3, fail)
                }
            }
        }
    }

    /// GOGC=1500 with a one-off 14× growth of the live heap at cycle 26: the overshoot
    /// of that cycle stays under GOGC's own bound, and utilization stays near 25%.
    func testHighGOGCWithSuddenGrowth() {
        var sim = PacerSimulation()
        sim.gcPercent = 1500
        sim.allocRate = Stream.random(7, seed: 0x53).offset(165)
        sim.growthRate = Stream.constant(2).sum(.ramp(-1, 12), .random(0.01, seed: 0x1), Stream.unit(14).delay(25))
        simulate(sim) { c, fail in
            let n = c.count
            if n > 12 {
                if n == 26 {
                    inRange("goal ratio", c[n - 1].goalRatio, 0.9, 15, fail)
                } else {
                    inRange("goal ratio", c[n - 1].goalRatio, 0.9, 1.05, fail)
                }
                near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, Tuning.goalUtilization + 0.03, fail)
                near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.03, fail)
            }
        }
    }

    /// A slow allocator with a small (near the 4 MiB minimum) and a large heap: the
    /// trigger sits late in the runway, ~95% of the way for the small heap and one heap
    /// minimum below the goal for the large one.
    func testSlowAllocationSmallAndLargeHeaps() {
        var small = PacerSimulation()
        small.allocRate = .constant(1)
        small.scanRate = .constant(2048)
        small.growthRate = Stream.constant(2).sum(.ramp(-1, 3))
        small.scannableFrac = .constant(0.01)
        simulate(small) { c, fail in
            let n = c.count
            if n > 4 {
                inRange("goal ratio", c[n - 1].goalRatio, 0.925, 1.025, fail)
                inRange("trigger ratio", c[n - 1].triggerRatio, 0.925, 0.975, fail)
            }
            if n > 25 {
                near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, 0.005, fail)
            }
        }
        var large = small
        large.growthRate = Stream.constant(4).sum(.ramp(-3, 12))
        simulate(large) { c, fail in
            let n = c.count
            if n > 13 {
                inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
                let m = Double(Tuning.defaultHeapMinimum)
                inRange("runway", c[n - 1].runway, m - 64 * 1024, m + 64 * 1024, fail)
            }
            if n > 25 {
                near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, 0.005, fail)
            }
        }
    }

    /// GOGC changes in the middle of a cycle's marking (SetGCPercent commits at once, as
    /// in Go). Returns the goal and assist ratio just before and just after the change
    /// (cycle 41, third step), and checks that the pacer settles before the change and
    /// again on the new GOGC's goal afterwards.
    private func changeGOGCMidCycle(allocRate: Double, to newPercent: Int, file: StaticString = #filePath, line: UInt = #line)
        -> (before: (goal: UInt, ratio: Double), after: (goal: UInt, ratio: Double), heapLive: UInt, results: [SimResult]) {
        var before = (goal: UInt(0), ratio: 0.0), after = (goal: UInt(0), ratio: 0.0), live: UInt = 0
        var sim = PacerSimulation()
        sim.allocRate = .constant(allocRate)
        sim.length = 80
        sim.duringMark = { cycle, step, pacer, heapLive in
            guard cycle == 40, step == 2 else { return }
            let p = Pacer.MarkProgress(heapLive: heapLive, heapScan: heapLive, scanWorkDone: 0, maxStackScan: 8192)
            before = (pacer.heapGoal, pacer.revise(p).workPerByte)
            pacer.setGCPercent(newPercent)
            pacer.commit(isSweepDone: true, heapLive: heapLive)
            after = (pacer.heapGoal, pacer.revise(p).workPerByte)
            live = heapLive
        }
        let r = simulate(sim, file: file, line: line) { c, fail in
            let n = c.count
            if (n >= 25 && n <= 40) || n >= 70 {
                inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
                near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
            }
            if n >= 45 {
                // The new GOGC's goal: live + (live + stacks + globals) × GOGC/100.
                let l = c[n - 1]
                let want = Double(l.heapMarked) + Double(l.heapMarked + 8192 + (32 << 10)) * Double(newPercent) / 100
                inRange("goal / GOGC=\(newPercent)'s goal", Double(l.goal) / want, 0.99, 1.01, fail)
            }
        }
        XCTAssertEqual(r[40].goal, after.goal, "the cycle ran to the goal set mid-cycle", file: file, line: line)
        return (before, after, live, r)
    }

    /// Lowering GOGC while the heap is still below the new goal pulls the goal in and
    /// makes assists steeper at once; raising it does the opposite.
    func testGOGCChangeMidCycle() {
        let down = changeGOGCMidCycle(allocRate: 330, to: 80)
        XCTAssertLessThan(down.after.goal, down.before.goal, "GOGC 100 → 80: the goal comes in at once")
        XCTAssertGreaterThan(down.heapLive, 0)
        XCTAssertLessThan(down.heapLive, down.after.goal, "the case: still below the new goal")
        XCTAssertGreaterThan(down.after.ratio, down.before.ratio * 1.5, "GOGC 100 → 80: assists steeper at once")
        let up = changeGOGCMidCycle(allocRate: 33, to: 300)
        XCTAssertGreaterThan(up.after.goal, up.before.goal, "GOGC 100 → 300: the goal moves out at once")
        XCTAssertLessThan(up.after.ratio, up.before.ratio, "GOGC 100 → 300: assists ease at once")
    }

    /// Lowering GOGC below where the heap already is: the goal stays 64 KiB above where
    /// the cycle started (Go's minimum runway), assists aim 10% past it, and the next
    /// cycles settle on the new goal.
    func testGOGCLoweredBelowTheHeapMidCycle() {
        let r = changeGOGCMidCycle(allocRate: 33, to: 50)
        XCTAssertEqual(r.after.goal, r.results[40].trigger + Tuning.minRunway)
        XCTAssertGreaterThan(r.heapLive, r.after.goal, "the case: already past the new goal")
        XCTAssertTrue(r.after.ratio.isFinite && r.after.ratio > 0)
    }

    // MARK: memory limit

    /// A limit far above the heap: behaves like GOGC alone, and the peak stays below the
    /// limit's goal.
    func testSteadyStateUnderAHighMemoryLimit() {
        var sim = PacerSimulation()
        sim.memoryLimit = 512 << 20
        simulate(sim) { c, fail in
            let n = c.count
            if c[n - 1].peak >= self.limitGoal(512 << 20) { fail("peak \(c[n - 1].peak) reaches the memory-limit goal") }
            if n >= 25 {
                near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, 0.005, fail)
                inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
            }
        }
    }

    /// GOGC off, limit 512 MiB: the goal is always the limit less headroom; the heap
    /// grows to it and the pacer settles there at 25% utilization. With a growing live
    /// heap that stays under the limit the same holds with GOGC on.
    func testGOGCOffWithAMemoryLimit() {
        var off = PacerSimulation()
        off.gcPercent = nil
        off.memoryLimit = 512 << 20
        var maintain = PacerSimulation()
        maintain.memoryLimit = 512 << 20
        maintain.growthRate = Stream.constant(3).sum(.ramp(-2, 12))
        var offGrowing = maintain
        offGrowing.gcPercent = nil
        for (sim, always) in [(off, true), (maintain, false), (offGrowing, true)] {
            simulate(sim) { c, fail in
                let n = c.count
                if always || n > 12 {
                    if c[n - 1].goal != self.limitGoal(512 << 20) { fail("goal \(c[n - 1].goal) is not the limit's \(self.limitGoal(512 << 20))") }
                }
                if n >= 25 {
                    near("GC utilization", c[n - 1].gcUtilization, Tuning.goalUtilization, 0.005, fail)
                    near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
                    inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail)
                }
            }
        }
    }

    /// Memory pressure: the live heap grows past the limit. The goal drops to the live
    /// heap (continuous collection) and marking runs at ~100% CPU (the CPU limiter, not
    /// the pacer, is what caps that). Same with GOGC off.
    func testLiveHeapBeyondTheMemoryLimit() {
        for percent in [100, nil] as [Int?] {
            var sim = PacerSimulation()
            sim.gcPercent = percent
            sim.memoryLimit = 512 << 20
            sim.growthRate = Stream.constant(3.5).sum(.ramp(-2.5, 12))
            simulate(sim) { c, fail in
                let n = c.count
                // GOGC off: the limit's goal, lowered further by however far the heap
                // got past the limit (the overage).
                let l = c[n - 1]
                if percent == nil && l.goal > self.limitGoal(512 << 20) && l.goal != l.heapMarked {
                    fail("goal \(l.goal) above the limit's and not the live heap")
                }
                if percent == nil && l.peak <= 512 << 20 && l.goal != self.limitGoal(512 << 20) {
                    fail("goal \(l.goal) is not the limit's with the heap under the limit")
                }
                if n > 12 && c[n - 1].goal != c[n - 1].heapMarked {
                    fail("goal \(c[n - 1].goal) is not the live heap \(c[n - 1].heapMarked)")
                }
                if n >= 25 {
                    near("GC utilization", c[n - 1].gcUtilization, 1.0, 0.005, fail)
                    near("utilization change", c[n - 1].gcUtilization, c[n - 2].gcUtilization, 0.005, fail)
                }
            }
        }
    }

    /// Non-heap memory (64 MiB of metadata, stacks…) counts against the limit: the goal
    /// is the limit less that overhead less headroom, and the heap settles under it.
    func testNonHeapMemoryLowersTheLimitGoal() {
        var sim = PacerSimulation()
        sim.gcPercent = nil
        sim.memoryLimit = 512 << 20
        sim.nonHeapBytes = 64 << 20
        let mib: UInt = 1 << 20
        let expected = limitGoal(448 * mib)   // headroom is taken from the goal, not the limit
        simulate(sim) { c, fail in
            let n = c.count
            if c[n - 1].goal != expected { fail("goal \(c[n - 1].goal), want \(expected)") }
            if c[n - 1].peak + (64 << 20) > 512 << 20 { fail("heap \(c[n - 1].peak) + overhead over the limit") }
            if n >= 25 { inRange("goal ratio", c[n - 1].goalRatio, 0.95, 1.05, fail) }
        }
    }
}
