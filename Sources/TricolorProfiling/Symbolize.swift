import Tricolor
import CTricolor
import Glibc
// The initializer that builds a `Backtrace` from addresses we captured ourselves is SPI
// (`Backtrace(architecture:frames:images:)` with `RichFrame`); the public API only
// symbolizes stacks that `Backtrace.capture()` took. Checked against the 6.3.1 toolchain.
@_spi(Internal) internal import Runtime

// Call stacks for the profilers: capture cheaply on the profiled path (a frame-pointer
// walk in C, no allocation, no locks), symbolize later, once per unique PC, when a
// profile is written.
//
// Conventions:
//   - A captured stack is an array of return addresses, innermost first.
//   - A PC handed to `Symbolizer.frames(for:)` is a return address minus 1, so that it
//     lies inside the call instruction and symbolizes to the call site (a return
//     address can belong to the next line, or to the next function when the call was
//     the last instruction of a noreturn path).

/// Turns PCs into function names and source lines, and lists the loaded images, for
/// writing a profile. The toolchain's `Runtime` module gives the image map, and the
/// function from the ELF symbol table for images without DWARF (the Swift runtime, libc);
/// `DwarfImage` (Symbolize+DWARF.swift) gives functions, source lines and inlined calls
/// for images with DWARF (ours), read once per image.
///
/// Costs: see `frames(for:)`.
///
/// Never use it on an allocation path: it allocates, and takes locks in the Swift
/// runtime and in malloc. Not thread-safe: use one instance from one thread at a time.
/// The `Runtime` module caches the symbol tables it loads per thread, for the life of
/// the thread: symbolize from one thread.
final class Symbolizer {
    /// The loaded images when `init` ran. Images loaded later (dlopen) are unknown.
    private let images: ImageMap

    /// `frames(for:)` results by PC. Written and read by the one thread that uses the symbolizer.
    private var cache: [UInt: [ProfileFrame]] = [:]

    /// Debug info by image index, read on the first PC in the image; nil inside: the
    /// image has none we can read.
    private var dwarf: [Int: DwarfImage?] = [:]

    /// The images as pprof mappings: the main executable first, then the rest in the
    /// image map's order (by address). `start` is the image's load address, `limit` the
    /// end of its text, `offset` 0 (the load address maps file offset 0 for the ELF
    /// images the dynamic loader maps, executables included); `buildID` is the GNU
    /// build ID in lowercase hex, or empty.
    let mappings: [ProfileMapping]

    init() {
        images = ImageMap.capture()
        var all: [ProfileMapping] = []
        all.reserveCapacity(images.count)
        for image in images {
            all.append(ProfileMapping(
                start: UInt64(image.baseAddress) ?? 0,
                limit: UInt64(image.endOfText) ?? 0,
                offset: 0,
                file: image.path ?? image.name ?? "",
                buildID: (image.uniqueID ?? []).map(hexByte).joined()))
        }
        // The main executable holds its own program headers (AT_PHDR).
        let phdr = UInt64(tc_executable_phdr())
        if phdr != 0, let i = images.indexOfImage(at: Backtrace.Address(phdr)), i != 0 {
            all.insert(all.remove(at: i), at: 0)
        }
        mappings = all
    }

    /// The frames at `pc`, innermost first: the functions inlined at that point (deepest
    /// first), then the function that contains `pc`. Names are the full demangled Swift
    /// names (`TricolorWorkloads.bottomUpTree(depth: Swift.Int) -> …`, module
    /// qualified, so overloads and specializations stay apart), or the symbol as the
    /// `Runtime` module demangles it for C and C++. Each frame has its source file and
    /// line where the image's DWARF has them (the innermost at `pc`, each outer one at
    /// the call site it inlined), else empty and 0. Empty when no image or symbol covers
    /// `pc`. Results are cached per PC.
    ///
    /// Cost (release, 2-core VM; the test executable, 1.1 MB of text and 0.9 MB of
    /// DWARF): the first PC in an image reads the image's DWARF, 20-35 ms; after that a
    /// new PC costs ~10 µs (0.6 µs of table lookups, the rest demangling and strings)
    /// and a PC already seen ~50 ns. In an image without DWARF, the first PC loads its
    /// symbol table through `Runtime` (a few ms), then ~8 µs per new PC.
    ///
    /// - Precondition: `pc` is a return address minus 1 (a call site), or the exact
    ///   address of an instruction.
    func frames(for pc: UInt) -> [ProfileFrame] {
        if let hit = cache[pc] { return hit }
        let result = symbolize(pc)
        cache[pc] = result
        return result
    }

    private func symbolize(_ pc: UInt) -> [ProfileFrame] {
        guard let index = images.indexOfImage(at: Backtrace.Address(UInt64(pc))) else { return [] }
        guard let debug = dwarfImage(index) else {
            return symbolName(pc).map { [ProfileFrame(function: $0)] } ?? []
        }
        let base = UInt64(images[index].baseAddress) ?? 0
        let vaddr = UInt64(pc) &- base &+ debug.vaddrOfFileStart
        // The function as DWARF describes it, else the symbol table's.
        guard let function = debug.functionName(at: vaddr).map({ demangle($0) ?? $0 }) ?? symbolName(pc)
        else { return [] }
        // Innermost first: the deepest inlined body at the PC's own line, then each
        // enclosing body at the line where it inlined the one inside it.
        var out: [ProfileFrame] = []
        var file = "", line = 0
        if let loc = debug.location(at: vaddr) { (file, line) = loc }
        func frame(_ function: String) -> ProfileFrame {
            // Line 0 is code with no source line (the compiler's own, e.g. "<compiler-generated>").
            line > 0 && !file.hasSuffix("<compiler-generated>")
                ? ProfileFrame(function: function, file: file, line: line) : ProfileFrame(function: function)
        }
        for call in debug.inlinedCalls(at: vaddr).reversed() {
            out.append(frame(debug.subprogramName(at: call.origin).map { demangle($0) ?? $0 } ?? "??"))
            file = debug.file(call.callFile)
            line = Int(call.callLine)
        }
        out.append(frame(function))
        return out
    }

    /// The demangled name of the symbol-table symbol at or before `pc`, via `Runtime`.
    private func symbolName(_ pc: UInt) -> String? {
        // Without `.showSourceLocations` and `.showInlineFrames`, which cost ~5 ms per PC
        // (see Symbolize+DWARF.swift). `.programCounter` is used as is; a
        // `.returnAddress` would have 1 subtracted again.
        let trace = Backtrace(
            architecture: Symbolizer.architecture,
            frames: CollectionOfOne(RichFrame<UInt64>.programCounter(UInt64(pc))),
            images: images)
        guard let symbol = trace.symbolicated(with: images, options: [])?.frames.first?.symbol,
              symbol.rawName != "<unknown>"
        else { return nil }
        return demangle(symbol.rawName) ?? symbol.name
    }

    private func dwarfImage(_ index: Int) -> DwarfImage? {
        if let known = dwarf[index] { return known }
        let image = images[index].path.flatMap { DwarfImage(path: $0) }
        dwarf[index] = image
        return image
    }

    private static let architecture: String = {
        #if arch(x86_64)
        return "x86_64"
        #elseif arch(arm64)
        return "arm64"
        #else
        return "unknown"
        #endif
    }()
}

private func hexByte(_ b: UInt8) -> String {
    let digits: StaticString = "0123456789abcdef"
    return digits.withUTF8Buffer { d in
        String(decoding: [d[Int(b >> 4)], d[Int(b & 15)]], as: UTF8.self)
    }
}

@_silgen_name("swift_demangle")
private func _swift_demangle(
    _ mangledName: UnsafePointer<CChar>?, _ mangledNameLength: Int,
    _ outputBuffer: UnsafeMutablePointer<CChar>?, _ outputBufferSize: UnsafeMutablePointer<Int>?,
    _ flags: UInt32) -> UnsafeMutablePointer<CChar>?

/// The full demangling of a Swift symbol (what `swift demangle` prints), or nil when
/// `name` is not a Swift mangled name.
private func demangle(_ name: String) -> String? {
    guard name.hasPrefix("$s") || name.hasPrefix("_$s") || name.hasPrefix("$S") || name.hasPrefix("_T")
    else { return nil }
    return name.withCString { p -> String? in
        guard let out = _swift_demangle(p, strlen(p), nil, nil, 0) else { return nil }
        defer { free(out) }
        return String(cString: out)
    }
}

/// The process's symbolizer, for profile writers and `Heap.symbolize`: one `Symbolizer`
/// (created on first use, so the image map includes every image loaded by then) used
/// under a lock, since a `Symbolizer` serves one thread at a time.
final class SharedSymbolizer: @unchecked Sendable {
    private let lock: OpaquePointer
    private var instance: Symbolizer?

    init() {
        lock = OpaquePointer(UnsafeMutableRawPointer.allocate(byteCount: tc_lock_size(), alignment: 64))
        tc_lock_init(lock)
    }

    private func with<R>(_ body: (Symbolizer) -> R) -> R {
        tc_lock_acquire(lock)
        defer { tc_lock_release(lock) }
        if instance == nil { instance = Symbolizer() }
        return body(instance!)
    }

    func frames(for pc: UInt) -> [ProfileFrame] { with { $0.frames(for: pc) } }
    var mappings: [ProfileMapping] { with { $0.mappings } }
}

extension Symbolizer {
    static let shared = SharedSymbolizer()
}
