@testable import Tricolor
@testable import TricolorScheme
import XCTest
import Foundation

// Tests of the example Scheme (Sources/TricolorScheme): each program runs on both the
// Tricolor interpreter and the ARC one and must print the same; the Tricolor one also
// runs under checked mode + clobberfree with a tiny GOGC (a collection every few
// allocations, freed objects poisoned), which turns a missing root in the interpreter
// into a trap or a wrong answer. Nothing here is timed.

final class SchemeTests: XCTestCase {
    /// Runs `source` on an interpreter; returns what it displayed and each form's value.
    private func tricolor(_ source: String, _ config: Configuration = Configuration()) throws -> (String, [String]) {
        var text = ""
        let s = try HeapScheme(configuration: config, output: { text += $0 })
        let values = try s.run(source)
        return (text, values)
    }

    private func arc(_ source: String) throws -> (String, [String]) {
        var text = ""
        let s = ARCScheme(output: { text += $0 })
        let values = try s.run(source)
        return (text, values)
    }

    /// Every program's last value on both interpreters, and under the stress configuration.
    private func expectValue(_ source: String, _ expected: String, stress: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try tricolor(source).1.last, expected, "tricolor", file: file, line: line)
        XCTAssertEqual(try arc(source).1.last, expected, "arc", file: file, line: line)
        if stress {
            let config = Configuration(gcPercent: 1, checked: true, clobberFree: true)
            XCTAssertEqual(try tricolor(source, config).1.last, expected, "tricolor, checked + clobberfree + GOGC=1", file: file, line: line)
        }
    }

    func testFactorial() throws {
        try expectValue("(define (fact n) (if (= n 0) 1 (* n (fact (- n 1))))) (fact 20)", "2432902008176640000")
    }

    func testFib() throws {
        try expectValue("(define (fib n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2))))) (fib 15)", "610")
    }

    func testClosuresAndCounters() throws {
        let src = """
        (define (make-counter)
          (define count 0)
          (lambda () (set! count (+ count 1)) count))
        (define a (make-counter))
        (define b (make-counter))
        (a) (a) (b)
        (list (a) (b))
        """
        try expectValue(src, "(3 2)")
        try expectValue("(define (adder n) (lambda (x) (+ x n))) ((adder 3) 4)", "7")
    }

    func testListsQuoteLetCondAndOr() throws {
        try expectValue("(let ((x 1) (y '(2 3))) (cons x y))", "(1 2 3)")
        try expectValue("(cond ((= 1 2) 'no) ((< 1 2) 'yes) (else 'else))", "yes")
        try expectValue("(list (and 1 2) (and) (or #f 3) (or))", "(2 #t 3 #f)")
        try expectValue("(define p (cons 1 2)) (set-cdr! p '(x)) p", "(1 x)")
        try expectValue("((lambda (a . rest) (list a rest)) 1 2 3)", "(1 (2 3))")
        try expectValue("((lambda args args))", "()")
        try expectValue("'(a . b)", "(a . b)")
    }

    func testDisplay() throws {
        let (text, _) = try tricolor("(display \"fact: \") (display (* 6 7)) (newline) (display '(1 \"s\"))")
        XCTAssertEqual(text, "fact: 42\n(1 \"s\")")
        XCTAssertEqual(try arc("(display \"fact: \") (display (* 6 7)) (newline) (display '(1 \"s\"))").0, text)
    }

    /// A tail-recursive loop of 10^6 iterations: without proper tail calls it would nest
    /// 10^6 Swift `eval` frames (hundreds of MB) and overflow the thread's 8 MiB stack.
    /// The shadow stack stays at its initial size.
    func testDeepTailRecursionRunsInConstantStack() throws {
        let src = "(define (loop i acc) (if (= i 0) acc (loop (- i 1) (+ acc 1)))) (loop 1000000 0)"
        let s = try HeapScheme(output: { _ in })
        XCTAssertEqual(try s.run(src).last, "1000000")
        s.heap.withMutator { m in
            XCTAssertEqual(m.state.pointee.stackCap, MutatorState.initialStackSlots, "the shadow stack never grew")
        }
        XCTAssertEqual(try arc(src).1.last, "1000000")
        // Tail calls through cond, begin, let and and/or too.
        try expectValue("""
            (define (f i) (cond ((= i 0) 'done) (else (begin (let ((j (- i 1))) (and #t (f j)))))))
            (f 100000)
            """, "done", stress: false)
    }

    /// Closures that close over their own environment (a cycle, closure ↔ environment)
    /// are garbage once dropped: the live heap after 200,000 of them is what it was
    /// after 20,000 (ARC would keep every one: see BENCHMARKS.md).
    func testClosureEnvironmentCyclesAreCollected() throws {
        let src = """
        (define (make-counter)
          (define count 0)
          (define (next) (set! count (+ count 1)) count)
          next)
        (define (churn i acc)
          (if (= i 0) acc
              (let ((k (make-counter))) (k) (churn (- i 1) (+ acc (k))))))
        """
        let s = try HeapScheme(output: { _ in })
        _ = try s.run(src)
        XCTAssertEqual(try s.run("(churn 20000 0)").last, "40000")
        s.heap.collect()
        let small = s.heap.memStats().heapAlloc
        XCTAssertEqual(try s.run("(churn 200000 0)").last, "400000")
        s.heap.collect()
        let big = s.heap.memStats().heapAlloc
        XCTAssertLessThan(big, small + 16 * 1024, "live heap grew with the number of closure cycles: \(small) → \(big) bytes")
        XCTAssertGreaterThan(s.heap.memStats().numGC, 2)
    }

    private func expectError(_ source: String, _ expected: SchemeError, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertThrowsError(try tricolor(source), file: file, line: line) { XCTAssertEqual($0 as? SchemeError, expected, "tricolor", file: file, line: line) }
        XCTAssertThrowsError(try arc(source), file: file, line: line) { XCTAssertEqual($0 as? SchemeError, expected, "arc", file: file, line: line) }
    }

    func testErrorsAreThrown() throws {
        try expectError("(+ 1 nope)", .unboundVariable("nope"))
        try expectError("(define (f x) x) (f 1 2)", .wrongArity(procedure: "f", expected: "1", got: 2))
        try expectError("((lambda (a . r) a))", .wrongArity(procedure: "#<procedure>", expected: "at least 1", got: 0))
        try expectError("(car 5)", .wrongType(procedure: "car", expected: "a pair", got: "5"))
        try expectError("(cdr '())", .wrongType(procedure: "cdr", expected: "a pair", got: "()"))
        try expectError("(+ 1 'a)", .wrongType(procedure: "+", expected: "a number", got: "a"))
        try expectError("(5 1)", .notAProcedure("5"))
        try expectError("(quotient 1 0)", .divisionByZero)
        try expectError("(error \"bad thing:\" 42)", .user("bad thing: 42"))
        try expectError("(car '(1)", .syntax("unterminated list: missing ')'"))
        try expectError("(set! undefined-var 1)", .unboundVariable("undefined-var"))
        try expectError("(if)", .syntax("if: expected at least 2 operands in (if)"))
    }

    /// An error unwinds every frame: the interpreter goes on with its state intact.
    func testInterpreterContinuesAfterAnError() throws {
        let s = try HeapScheme(configuration: Configuration(checked: true), output: { _ in })
        _ = try s.run("(define xs '(1 2 3))")
        XCTAssertThrowsError(try s.run("(define (deep n) (if (= n 0) (car 1) (+ 1 (deep (- n 1))))) (deep 50)"))
        s.heap.collect()
        XCTAssertEqual(try s.run("(cons 0 xs)").last, "(0 1 2 3)")
        s.heap.withMutator { m in XCTAssertEqual(m.state.pointee.stackTop, 0, "every frame was popped") }
    }

    /// The `scheme` executable built next to this test bundle.
    private func schemeExecutable() throws -> URL {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        for dir in [me.deletingLastPathComponent(), me.deletingLastPathComponent().deletingLastPathComponent()] {
            let c = dir.appendingPathComponent("scheme")
            if FileManager.default.isExecutableFile(atPath: c.path) { return c }
        }
        throw SchemeError.user("no scheme executable next to \(me.path)")
    }

    /// Runs `scheme args` with `input` on stdin; returns (status, stdout).
    private func runScheme(_ args: [String], input: String) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = try schemeExecutable()
        p.arguments = args
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        inPipe.fileHandleForWriting.write(input.data(using: .utf8)!)
        try inPipe.fileHandleForWriting.close()
        let data = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The REPL reads forms from stdin (a form may span lines), prints each value,
    /// prints an error and goes on, on both interpreters.
    func testREPLOnStdin() throws {
        let input = "(define (sq x)\n  (* x x))\n(sq 12)\n(car 1)\n(undefined)\n(list 1 2 'a)\n"
        let expected = "sq\n144\ncar: expected a pair, got 1\nunbound variable: undefined\n(1 2 a)\n"
        for args in [[], ["--arc"]] {
            let (status, out) = try runScheme(args, input: input)
            XCTAssertEqual(status, 0, "\(args)")
            XCTAssertEqual(out, expected, "\(args)")
        }
    }

    func testReaderCompleteness() {
        XCTAssertTrue(Reader.isComplete("(a (b) \"(\") ; (\n"))
        XCTAssertFalse(Reader.isComplete("(define (f x)"))
        XCTAssertFalse(Reader.isComplete("\"open"))
    }
}
