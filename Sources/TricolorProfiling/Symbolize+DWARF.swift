import Tricolor
import Glibc

// Source lines and inline call chains for the symbolizer, read from an image's DWARF
// once and then looked up by binary search. See Symbolize.swift.
//
// Why not the `Runtime` module's `.showSourceLocations`: it re-runs the line-number
// program of every compile unit for each address it looks up (ElfImage.sourceLocation
// in the 6.3.1 toolchain), about 5 ms per PC on our release test binary; a profile has
// thousands of PCs. Reading all the tables once here costs 20-35 ms on that binary
// (six or so such lookups); a lookup is then a binary search, under a microsecond.
//
// Scope: ELF64 little-endian files (x86_64, aarch64 Linux); DWARF 2-5 .debug_line and
// .debug_info (Swift emits version 4, clang version 5) in the file itself. Compressed
// sections, split DWARF (.dwo) and separate debug files (.gnu_debuglink) are not read:
// those PCs get names from the symbol table but no file or line.
//
// Everything is read through `ByteCursor`, which checks every access against the
// section it reads; malformed input ends the unit being read, never the process.

/// A bounds-checked little-endian reader over one section. An out-of-range read sets
/// `failed`, returns 0, and leaves the cursor at the end, so loops end.
struct ByteCursor {
    let base: UnsafePointer<UInt8>
    let count: Int
    var pos: Int
    var failed = false

    init(_ section: UnsafeBufferPointer<UInt8>, at pos: Int = 0) {
        base = section.baseAddress ?? UnsafePointer(bitPattern: 1)!
        count = section.count
        self.pos = pos
        if pos < 0 || pos > count { fail() }
    }

    var atEnd: Bool { pos >= count }

    mutating func fail() { failed = true; pos = count }

    /// Moves to `offset` (must be within the section).
    mutating func seek(_ offset: Int) { if offset < 0 || offset > count { fail() } else { pos = offset } }

    mutating func skip(_ n: Int) { if n < 0 || n > count - pos { fail() } else { pos += n } }

    /// `n` bytes as a little-endian unsigned integer, n in 1...8.
    mutating func uint(_ n: Int) -> UInt64 {
        guard n <= count - pos else { fail(); return 0 }
        var v: UInt64 = 0
        for i in 0..<n { v |= UInt64(base[pos + i]) << (8 * UInt64(i)) }
        pos += n
        return v
    }

    mutating func u8() -> UInt8 { UInt8(truncatingIfNeeded: uint(1)) }
    mutating func u16() -> UInt64 { uint(2) }
    mutating func u32() -> UInt64 { uint(4) }
    mutating func u64() -> UInt64 { uint(8) }

    mutating func uleb() -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard pos < count else { fail(); return 0 }
            let b = base[pos]; pos += 1
            if shift < 64 { v |= UInt64(b & 0x7f) << shift }
            shift += 7
            if b & 0x80 == 0 { return v }
        }
    }

    mutating func sleb() -> Int64 {
        var v: Int64 = 0, shift: Int64 = 0, b: UInt8 = 0
        repeat {
            guard pos < count else { fail(); return 0 }
            b = base[pos]; pos += 1
            if shift < 64 { v |= Int64(b & 0x7f) << shift }
            shift += 7
        } while b & 0x80 != 0
        if shift < 64 && b & 0x40 != 0 { v |= -(Int64(1) << shift) }
        return v
    }

    /// Moves past a NUL-terminated string.
    mutating func skipCString() {
        var end = pos
        while end < count && base[end] != 0 { end += 1 }
        if end < count { pos = end + 1 } else { fail() }
    }

    /// A NUL-terminated string; the cursor moves past the NUL.
    mutating func cString() -> String {
        var end = pos
        while end < count && base[end] != 0 { end += 1 }
        guard end < count else { fail(); return "" }
        let s = String(decoding: UnsafeBufferPointer(start: base + pos, count: end - pos), as: UTF8.self)
        pos = end + 1
        return s
    }

    /// The NUL-terminated string at `offset`, or "" when out of range.
    static func string(in section: UnsafeBufferPointer<UInt8>, at offset: UInt64) -> String {
        guard offset < UInt64(section.count) else { return "" }
        var c = ByteCursor(section, at: Int(offset))
        return c.cString()
    }
}

/// The DWARF of one ELF image, mapped read-only for the lifetime of the object.
/// Addresses here are the file's virtual addresses (`vaddr`), not run-time ones.
final class DwarfImage {
    /// One inlined call: `[low, high)` of code that came from `origin`'s body, inlined
    /// at `callFile:callLine` of the function (or inlined body) enclosing it. `depth` is
    /// the nesting depth of the DIE: larger means more deeply inlined.
    struct InlinedCall {
        var low: UInt64
        var high: UInt64
        var depth: Int32
        var callLine: Int32
        var callFile: Int32      // index into `files`, or -1
        var origin: Int          // .debug_info offset of the abstract subprogram DIE
    }

    let map: UnsafeRawPointer
    let mapSize: Int
    var sections: [String: UnsafeBufferPointer<UInt8>] = [:]

    /// vaddr = run-time address - load address + `vaddrOfFileStart`.
    let vaddrOfFileStart: UInt64

    /// Source file paths, indexed by the line rows and inline records.
    var files: [String] = []

    /// Line rows sorted by address; a row with `rowFile == -1` ends a sequence.
    var rowAddr: [UInt64] = []
    var rowFile: [Int32] = []
    var rowLine: [Int32] = []

    /// Inlined calls sorted by `low`; `maxHigh[i]` is the largest `high` of entries 0...i.
    var inlined: [InlinedCall] = []
    var maxHigh: [UInt64] = []

    /// Out-of-line functions (subprogram DIEs with code), sorted by `low`: code range
    /// and .debug_info offset of the DIE. Names code that has no symbol of its own
    /// (copies of shared helpers the linker kept without a symbol).
    var functions: [(low: UInt64, high: UInt64, die: Int)] = []

    /// Subprogram DIEs by .debug_info offset: linkage name (or plain name), or the
    /// offset of the DIE that has it (DW_AT_specification / DW_AT_abstract_origin).
    var subprogramName: [Int: String] = [:]
    var subprogramLink: [Int: Int] = [:]

    /// Per line-program offset: where its file table starts in `files`, and the index
    /// of its first file (1 before DWARF 5, 0 from 5).
    var fileTables: [UInt64: (start: Int, count: Int, first: Int)] = [:]

    /// Line programs whose relative paths have been joined to their unit's comp_dir.
    var relativePathsResolved: Set<UInt64> = []

    /// Maps `path` and reads its line tables and inline records; nil when the file is
    /// not a readable ELF64 little-endian file or has no .debug_line.
    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 64 else { return nil }
        let size = Int(st.st_size)
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        map = UnsafeRawPointer(p)
        mapSize = size
        let file = UnsafeBufferPointer(start: map.assumingMemoryBound(to: UInt8.self), count: size)
        guard let start = DwarfImage.readSectionHeaders(file, into: &sections) else {
            munmap(UnsafeMutableRawPointer(mutating: map), mapSize)
            return nil
        }
        vaddrOfFileStart = start
        guard sections[".debug_line"] != nil else {
            munmap(UnsafeMutableRawPointer(mutating: map), mapSize)
            return nil
        }
        readLinePrograms()
        readDebugInfo()
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: map), mapSize) }

    // MARK: lookups

    /// The file and line of the instruction at `vaddr`, or nil (no row, or line 0).
    func location(at vaddr: UInt64) -> (file: String, line: Int)? {
        // Last row with address <= vaddr.
        var lo = 0, hi = rowAddr.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if rowAddr[mid] <= vaddr { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return nil }
        let f = rowFile[lo - 1], line = rowLine[lo - 1]
        guard f >= 0, line > 0 else { return nil }
        return (files[Int(f)], Int(line))
    }

    /// The inlined calls whose code contains `vaddr`, outermost first.
    func inlinedCalls(at vaddr: UInt64) -> [InlinedCall] {
        // Entries with low <= vaddr are [0, n); walk back while some entry may still cover vaddr.
        var lo = 0, hi = inlined.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if inlined[mid].low <= vaddr { lo = mid + 1 } else { hi = mid }
        }
        var out: [InlinedCall] = []
        var i = lo - 1
        while i >= 0 && maxHigh[i] > vaddr {
            if inlined[i].high > vaddr { out.append(inlined[i]) }
            i -= 1
        }
        out.sort { $0.depth < $1.depth }
        return out
    }

    /// The linkage name (else the plain name) of the out-of-line function containing `vaddr`.
    func functionName(at vaddr: UInt64) -> String? {
        var lo = 0, hi = functions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if functions[mid].low <= vaddr { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, functions[lo - 1].high > vaddr else { return nil }
        return subprogramName(at: functions[lo - 1].die)
    }

    /// The linkage name (else the plain name) of the subprogram DIE at `offset`.
    func subprogramName(at offset: Int) -> String? {
        var o = offset
        for _ in 0..<8 {
            if let name = subprogramName[o] { return name }
            guard let next = subprogramLink[o] else { return nil }
            o = next
        }
        return nil
    }

    func file(_ index: Int32) -> String { index >= 0 && Int(index) < files.count ? files[Int(index)] : "" }

    // MARK: ELF

    /// Fills `sections` with the uncompressed sections that have file contents and
    /// returns the vaddr of file offset 0 (from the first PT_LOAD), or nil if `file`
    /// is not ELF64 little-endian.
    static func readSectionHeaders(_ file: UnsafeBufferPointer<UInt8>,
                                           into sections: inout [String: UnsafeBufferPointer<UInt8>]) -> UInt64? {
        var c = ByteCursor(file)
        guard c.u32() == 0x464c_457f, c.u8() == 2 /* ELFCLASS64 */, c.u8() == 1 /* ELFDATA2LSB */ else { return nil }
        c.seek(0x20); let phoff = c.u64(); let shoff = c.u64()
        c.seek(0x36); let phentsize = Int(c.u16()), phnum = Int(c.u16())
        let shentsize = Int(c.u16()), shnum = Int(c.u16()), shstrndx = Int(c.u16())
        guard !c.failed else { return nil }

        var fileStartVaddr: UInt64 = 0
        for i in 0..<phnum {
            c.seek(Int(clamping: phoff) &+ i * phentsize)
            let type = c.u32(); _ = c.u32()
            let offset = c.u64(), vaddr = c.u64()
            if c.failed { return nil }
            if type == 1 /* PT_LOAD */ { fileStartVaddr = vaddr &- offset; break }
        }

        func header(_ i: Int) -> (name: UInt64, type: UInt64, flags: UInt64, offset: UInt64, size: UInt64)? {
            var h = ByteCursor(file, at: Int(clamping: shoff) &+ i * shentsize)
            let name = h.u32(), type = h.u32(), flags = h.u64()
            _ = h.u64()
            let offset = h.u64(), size = h.u64()
            return h.failed ? nil : (name, type, flags, offset, size)
        }
        guard shentsize >= 64, shstrndx < shnum, let strtab = header(shstrndx),
              strtab.offset <= UInt64(file.count), strtab.size <= UInt64(file.count) - strtab.offset else { return fileStartVaddr }
        let names = UnsafeBufferPointer(rebasing: file[Int(strtab.offset)..<Int(strtab.offset + strtab.size)])
        for i in 0..<shnum {
            guard let h = header(i) else { continue }
            // SHT_NOBITS (8) has no contents; SHF_COMPRESSED (0x800) would need zlib/zstd.
            guard h.type != 8, h.flags & 0x800 == 0,
                  h.offset <= UInt64(file.count), h.size <= UInt64(file.count) - h.offset else { continue }
            let name = ByteCursor.string(in: names, at: h.name)
            guard name.hasPrefix(".debug_") else { continue }
            sections[name] = UnsafeBufferPointer(rebasing: file[Int(h.offset)..<Int(h.offset + h.size)])
        }
        return fileStartVaddr
    }

    // MARK: .debug_line

    func readLinePrograms() {
        guard let section = sections[".debug_line"] else { return }
        pendingInlineSection = section
        defer { pendingInlineSection = nil }
        var rows: [(addr: UInt64, file: Int32, line: Int32, seq: Int)] = []
        var c = ByteCursor(section)
        while !c.atEnd && !c.failed {
            let unitOffset = c.pos
            var length = c.u32()
            var offsetSize = 4
            if length == 0xffff_ffff { length = c.u64(); offsetSize = 8 }
            guard !c.failed, length <= UInt64(c.count - c.pos) else { break }
            let unitEnd = c.pos + Int(length)
            readLineProgram(section, offset: unitOffset, cursor: &c, unitEnd: unitEnd, offsetSize: offsetSize, rows: &rows)
            c.seek(unitEnd)
        }
        // By address; at one address an end-of-sequence (or unknown-file) row goes first
        // (it closes the previous sequence), then rows in program order (the last one
        // wins a lookup). `seq` is the row's position in the programs.
        rows.sort { a, b in
            if a.addr != b.addr { return a.addr < b.addr }
            if (a.file < 0) != (b.file < 0) { return a.file < 0 }
            return a.seq < b.seq
        }
        rowAddr = rows.map(\.addr)
        rowFile = rows.map(\.file)
        rowLine = rows.map(\.line)
    }

    func readLineProgram(_ section: UnsafeBufferPointer<UInt8>, offset: Int, cursor c: inout ByteCursor,
                                 unitEnd: Int, offsetSize: Int,
                                 rows: inout [(addr: UInt64, file: Int32, line: Int32, seq: Int)]) {
        let version = c.u16()
        guard version >= 2 && version <= 5 else { return }
        if version >= 5 { _ = c.u8(); _ = c.u8() /* address size (set_address has its own length), segment selector size */ }
        let headerLength = c.uint(offsetSize)
        let programStart = c.pos + Int(clamping: headerLength)
        let minInstLength = UInt64(c.u8())
        if version >= 4 { _ = c.u8() /* max ops per instruction: VLIW only */ }
        _ = c.u8()   // default_is_stmt: every row counts, statement or not
        let lineBase = Int64(Int8(bitPattern: c.u8()))
        let lineRange = UInt64(c.u8())
        let opcodeBase = Int(c.u8())
        var argCounts = [UInt8](repeating: 0, count: max(opcodeBase, 1))
        if opcodeBase > 1 { for i in 1..<opcodeBase { argCounts[i] = c.u8() } }
        guard !c.failed, lineRange != 0, programStart <= unitEnd else { return }

        // Directory and file tables.
        let fileStart = files.count
        var firstFile = 1
        if version >= 5 {
            firstFile = 0
            var dirs: [String] = []
            let dirFormats = readEntryFormats(&c)
            let dirCount = c.uleb()
            for _ in 0..<min(dirCount, 1 << 16) where !c.failed {
                let e = readEntry(&c, dirFormats, offsetSize: offsetSize)
                dirs.append(e.path)
            }
            let fileFormats = readEntryFormats(&c)
            let fileCount = c.uleb()
            for _ in 0..<min(fileCount, 1 << 20) where !c.failed {
                let e = readEntry(&c, fileFormats, offsetSize: offsetSize)
                var dir = e.dir < dirs.count ? dirs[e.dir] : ""
                if !dir.isEmpty && !dir.hasPrefix("/") && e.dir != 0 && !dirs.isEmpty { dir = join(dirs[0], dir) }
                files.append(join(dir, e.path))
            }
        } else {
            var dirs: [String] = [""]   // 0: the compilation directory, not recorded here
            while !c.failed {
                let d = c.cString()
                if d.isEmpty { break }
                dirs.append(d)
            }
            while !c.failed {
                let name = c.cString()
                if name.isEmpty { break }
                let dir = Int(clamping: c.uleb()); _ = c.uleb(); _ = c.uleb()
                files.append(join(dir < dirs.count ? dirs[dir] : "", name))
            }
        }
        guard !c.failed else { return }
        fileTables[UInt64(offset)] = (fileStart, files.count - fileStart, firstFile)
        let fileCount = files.count - fileStart

        // The line-number state machine (DWARF 5 section 6.2).
        c.seek(programStart)
        var address: UInt64 = 0, file: Int64 = 1, line: Int64 = 1
        func emit(end: Bool = false) {
            let idx = file - Int64(firstFile)
            let known = !end && idx >= 0 && idx < fileCount
            rows.append((address, known ? Int32(fileStart + Int(idx)) : -1, known ? Int32(clamping: line) : 0, rows.count))
        }
        while c.pos < unitEnd && !c.failed {
            let op = Int(c.u8())
            if op >= opcodeBase {
                let adj = UInt64(op - opcodeBase)
                address &+= (adj / lineRange) * minInstLength
                line += lineBase + Int64(adj % lineRange)
                emit()
                continue
            }
            switch op {
            case 0:   // extended
                let len = Int(clamping: c.uleb())
                let next = c.pos + len
                guard len > 0, next <= unitEnd else { c.fail(); break }
                let sub = c.u8()
                switch sub {
                case 1: emit(end: true); address = 0; file = 1; line = 1                      // end_sequence
                case 2: address = c.uint(min(len - 1, 8))                                     // set_address
                default: break                                                                // define_file, discriminator, vendor
                }
                c.seek(next)
            case 1: emit()                                                  // copy
            case 2: address &+= c.uleb() &* minInstLength                   // advance_pc
            case 3: line += c.sleb()                                        // advance_line
            case 4: file = Int64(clamping: c.uleb())                        // set_file
            case 5: _ = c.uleb()                                            // set_column
            case 8: address &+= ((255 - UInt64(opcodeBase)) / lineRange) * minInstLength   // const_add_pc
            case 9: address &+= c.u16()                                     // fixed_advance_pc
            case 6, 7, 10, 11: break                                        // flags without operands
            default:                                                        // set_isa and unknown: skip operands
                for _ in 0..<argCounts[op] { _ = c.uleb() }
            }
        }
    }

    func join(_ dir: String, _ name: String) -> String {
        if name.hasPrefix("/") || dir.isEmpty { return name }
        return dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    func readEntryFormats(_ c: inout ByteCursor) -> [(type: UInt64, form: UInt64)] {
        let n = Int(c.u8())
        var formats: [(UInt64, UInt64)] = []
        for _ in 0..<n { formats.append((c.uleb(), c.uleb())) }
        return formats
    }

    /// One directory or file entry of a DWARF 5 line header: its path and directory index.
    func readEntry(_ c: inout ByteCursor, _ formats: [(type: UInt64, form: UInt64)],
                           offsetSize: Int) -> (path: String, dir: Int) {
        var path = "", dir = 0
        for (type, form) in formats {
            let v = readForm(&c, form: form, offsetSize: offsetSize, addressSize: 8, version: 5)
            switch type {
            case 1: path = string(v, strOffsetsBase: nil)     // DW_LNCT_path
            case 2: dir = Int(clamping: v.value)              // DW_LNCT_directory_index
            default: break
            }
        }
        return (path, dir)
    }

    /// The section that `.inlineString` offsets refer to while a table is being read.
    var pendingInlineSection: UnsafeBufferPointer<UInt8>?
}
