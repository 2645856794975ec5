// scheme: the example interpreter's command line.
//
//   scheme [--arc] [--stats] [FILE]
//
// With FILE, evaluates it (output only from display/newline); without, a REPL on
// stdin: each complete form is evaluated and its value printed; errors are printed and
// the REPL goes on. --arc runs the ARC-classes interpreter instead of the Tricolor one.
// --stats prints `# impl=… wall_s=… maxrss_mb=… [numgc=…]` on stderr at the end
// (peak RSS from getrusage). Exit status: 0, 1 on an error in FILE, 64 on bad usage.
import Glibc
import Tricolor
import TricolorScheme

var arc = false, stats = false
var file: String? = nil
for a in CommandLine.arguments.dropFirst() {
    switch a {
    case "--arc": arc = true
    case "--stats": stats = true
    case "-h", "--help":
        print("usage: scheme [--arc] [--stats] [FILE]")
        exit(0)
    default:
        if a.hasPrefix("-") || file != nil {
            err("scheme: unexpected argument '\(a)'\nusage: scheme [--arc] [--stats] [FILE]\n")
            exit(64)
        }
        file = a
    }
}

func out(_ s: String) { print(s, terminator: "") }
func err(_ s: String) {
    fflush(nil)
    var bytes = Array(s.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

let run: (String) throws -> [String]
var heapScheme: HeapScheme? = nil
if arc {
    let s = ARCScheme(output: out)
    run = s.run
} else {
    let config: Configuration
    do { config = try Configuration.fromEnvironment() } catch { err("scheme: \(error)\n"); exit(78) }
    let s = try HeapScheme(configuration: config, output: out)
    heapScheme = s
    run = s.run
}

var start = timespec()
clock_gettime(CLOCK_MONOTONIC, &start)
var status: Int32 = 0

if let file {
    guard let fp = fopen(file, "r") else {
        err("scheme: cannot open \(file) (errno \(errno))\n")
        exit(1)
    }
    var text = ""
    var buf = [CChar](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, fp)
        if n <= 0 { break }
        text += String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    fclose(fp)
    do { _ = try run(text) } catch {
        err("scheme: \(error)\n")
        status = 1
    }
} else {
    let tty = isatty(0) != 0
    var pending = ""
    if tty { out("> "); fflush(nil) }
    while let line = readLine(strippingNewline: false) {
        pending += line
        guard Reader.isComplete(pending) else { continue }
        do {
            for v in try run(pending) where v != "#<unspecified>" { out(v + "\n") }
        } catch {
            out("\(error)\n")
        }
        pending = ""
        if tty { out("> ") }
        fflush(nil)
    }
}
fflush(nil)

if stats {
    var end = timespec()
    clock_gettime(CLOCK_MONOTONIC, &end)
    let wall = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    var ru = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
    var line = "# impl=\(arc ? "arc" : "tricolor") wall_s=\(String(format3(wall))) maxrss_mb=\(String(format3(Double(ru.ru_maxrss) / 1024)))"
    if let h = heapScheme { line += " numgc=\(h.heap.memStats().numGC)" }
    err(line + "\n")
}
exit(status)

func format3(_ x: Double) -> String {
    let r = (x * 1000).rounded() / 1000
    return "\(r)"
}
