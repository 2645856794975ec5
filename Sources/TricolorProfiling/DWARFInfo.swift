import Tricolor
import Glibc

// DWARF attribute forms and .debug_info for the symbolizer's DwarfImage
// (Symbolize+DWARF.swift): compile units, subprograms and inlined-subroutine entries,
// read once per image into tables that `functionName(at:)` and `inlinedCalls(at:)`
// search. Every read goes through the bounds-checked `ByteCursor`.

extension DwarfImage {
    // MARK: forms

    /// An attribute value as read from its form. `kind` says how to interpret `value`.
    struct FormValue {
        enum Kind { case constant, address, addressIndex, strp, lineStrp, strIndex, inlineString, ref, refAddr,
                    rangeListIndex, secOffset, block, unknown }
        var kind: Kind
        var value: UInt64
    }

    /// Reads one value of `form` (DWARF 5 table 7.6 plus the GNU indexed forms). An
    /// unknown form fails the cursor: the size of what follows is unknown.
    func readForm(_ c: inout ByteCursor, form: UInt64, offsetSize: Int, addressSize: Int,
                          version: UInt64, implicitConst: Int64 = 0) -> FormValue {
        switch form {
        case 0x01: return .init(kind: .address, value: c.uint(addressSize))                  // addr
        case 0x03: c.skip(Int(c.u16())); return .init(kind: .block, value: 0)                  // block2
        case 0x04: c.skip(Int(c.u32())); return .init(kind: .block, value: 0)                  // block4
        case 0x05: return .init(kind: .constant, value: c.u16())                               // data2
        case 0x06: return .init(kind: .constant, value: c.u32())                               // data4
        case 0x07: return .init(kind: .constant, value: c.u64())                               // data8
        case 0x08:                                                                             // string
            let at = c.pos; c.skipCString(); return .init(kind: .inlineString, value: UInt64(at))
        case 0x09, 0x18: c.skip(Int(clamping: c.uleb())); return .init(kind: .block, value: 0)  // block, exprloc
        case 0x0a: c.skip(Int(c.u8())); return .init(kind: .block, value: 0)                   // block1
        case 0x0b, 0x0c: return .init(kind: .constant, value: UInt64(c.u8()))                  // data1, flag
        case 0x0d: return .init(kind: .constant, value: UInt64(bitPattern: c.sleb()))          // sdata
        case 0x0e: return .init(kind: .strp, value: c.uint(offsetSize))                        // strp
        case 0x0f: return .init(kind: .constant, value: c.uleb())                              // udata
        case 0x10: return .init(kind: .refAddr, value: c.uint(version <= 2 ? addressSize : offsetSize))   // ref_addr
        case 0x11: return .init(kind: .ref, value: UInt64(c.u8()))                             // ref1
        case 0x12: return .init(kind: .ref, value: c.u16())                                    // ref2
        case 0x13: return .init(kind: .ref, value: c.u32())                                    // ref4
        case 0x14: return .init(kind: .ref, value: c.u64())                                    // ref8
        case 0x15: return .init(kind: .ref, value: c.uleb())                                   // ref_udata
        case 0x16:                                                                             // indirect
            let f = c.uleb()
            guard f != 0x16 else { c.fail(); return .init(kind: .unknown, value: 0) }   // no unbounded recursion
            return readForm(&c, form: f, offsetSize: offsetSize, addressSize: addressSize, version: version)
        case 0x17: return .init(kind: .secOffset, value: c.uint(offsetSize))                   // sec_offset
        case 0x19: return .init(kind: .constant, value: 1)                                     // flag_present
        case 0x1a, 0x1f02: return .init(kind: .strIndex, value: c.uleb())                      // strx, GNU_str_index
        case 0x1b, 0x1f01: return .init(kind: .addressIndex, value: c.uleb())                  // addrx, GNU_addr_index
        case 0x1c: return .init(kind: .unknown, value: c.u32())                                // ref_sup4
        case 0x1d, 0x1f20, 0x1f21: return .init(kind: .unknown, value: c.uint(offsetSize))     // strp_sup, GNU_ref_alt, GNU_strp_alt
        case 0x1e: c.skip(16); return .init(kind: .block, value: 0)                            // data16
        case 0x1f: return .init(kind: .lineStrp, value: c.uint(offsetSize))                    // line_strp
        case 0x20: return .init(kind: .unknown, value: c.u64())                                // ref_sig8
        case 0x21: return .init(kind: .constant, value: UInt64(bitPattern: implicitConst))     // implicit_const
        case 0x22: return .init(kind: .unknown, value: c.uleb())                               // loclistx
        case 0x23: return .init(kind: .rangeListIndex, value: c.uleb())                        // rnglistx
        case 0x24: return .init(kind: .unknown, value: c.u64())                                // ref_sup8
        case 0x25, 0x26, 0x27, 0x28: return .init(kind: .strIndex, value: c.uint(Int(form - 0x24)))       // strx1-4
        case 0x29, 0x2a, 0x2b, 0x2c: return .init(kind: .addressIndex, value: c.uint(Int(form - 0x28)))   // addrx1-4
        default: c.fail(); return .init(kind: .unknown, value: 0)
        }
    }

    /// The string a string-class value names ("" if none). `strOffsetsBase` is the unit's
    /// DW_AT_str_offsets_base, needed for the strx forms.
    func string(_ v: FormValue, strOffsetsBase: UInt64?, offsetSize: Int = 4) -> String {
        switch v.kind {
        case .strp: return sections[".debug_str"].map { ByteCursor.string(in: $0, at: v.value) } ?? ""
        case .lineStrp: return sections[".debug_line_str"].map { ByteCursor.string(in: $0, at: v.value) } ?? ""
        case .inlineString:
            // Only produced while reading .debug_info or .debug_line; the offset is in the current section.
            return pendingInlineSection.map { ByteCursor.string(in: $0, at: v.value) } ?? ""
        case .strIndex:
            guard let base = strOffsetsBase, let offsets = sections[".debug_str_offsets"] else { return "" }
            var c = ByteCursor(offsets, at: Int(clamping: base &+ v.value &* UInt64(offsetSize)))
            let off = c.uint(offsetSize)
            return c.failed ? "" : (sections[".debug_str"].map { ByteCursor.string(in: $0, at: off) } ?? "")
        default: return ""
        }
    }


    // MARK: .debug_info

    struct Abbrev {
        var tag: UInt64
        var hasChildren: Bool
        var attrs: [(name: UInt64, form: UInt64, implicitConst: Int64)]
    }

    func readAbbrevs(at offset: UInt64) -> [UInt64: Abbrev] {
        guard let section = sections[".debug_abbrev"] else { return [:] }
        var c = ByteCursor(section, at: Int(clamping: offset))
        var table: [UInt64: Abbrev] = [:]
        while !c.failed {
            let code = c.uleb()
            if code == 0 { break }
            let tag = c.uleb()
            let children = c.u8() != 0
            var attrs: [(UInt64, UInt64, Int64)] = []
            while !c.failed {
                let name = c.uleb(), form = c.uleb()
                if name == 0 && form == 0 { break }
                attrs.append((name, form, form == 0x21 ? c.sleb() : 0))
            }
            table[code] = Abbrev(tag: tag, hasChildren: children, attrs: attrs)
        }
        return table
    }

    func readDebugInfo() {
        guard let section = sections[".debug_info"] else { return }
        pendingInlineSection = section
        defer { pendingInlineSection = nil }
        var abbrevCache: [UInt64: [UInt64: Abbrev]] = [:]
        var c = ByteCursor(section)
        while !c.atEnd && !c.failed {
            let unitStart = c.pos
            var length = c.u32()
            var offsetSize = 4
            if length == 0xffff_ffff { length = c.u64(); offsetSize = 8 }
            guard !c.failed, length <= UInt64(c.count - c.pos) else { break }
            let unitEnd = c.pos + Int(length)
            let version = c.u16()
            var addressSize = 8, abbrevOffset: UInt64 = 0, unitType: UInt8 = 1
            if version >= 5 {
                unitType = c.u8(); addressSize = Int(c.u8()); abbrevOffset = c.uint(offsetSize)
                switch unitType {
                case 1, 3: break                    // compile, partial
                case 4, 5: _ = c.u64()              // skeleton, split_compile: dwo_id
                default: c.seek(unitEnd); continue  // type units: no code
                }
            } else if version >= 2 {
                abbrevOffset = c.uint(offsetSize); addressSize = Int(c.u8())
            }
            if !c.failed && version >= 2 && version <= 5 && (addressSize == 4 || addressSize == 8) {
                if abbrevCache[abbrevOffset] == nil { abbrevCache[abbrevOffset] = readAbbrevs(at: abbrevOffset) }
                var unit = ByteCursor(UnsafeBufferPointer(rebasing: section[0..<unitEnd]), at: c.pos)
                readUnit(&unit, unitStart: unitStart, version: version, offsetSize: offsetSize,
                         addressSize: addressSize, abbrevs: abbrevCache[abbrevOffset]!)
            }
            c.seek(unitEnd)
        }
        inlined.sort { $0.low < $1.low }
        functions.sort { $0.low < $1.low }
        maxHigh = []
        maxHigh.reserveCapacity(inlined.count)
        var m: UInt64 = 0
        for e in inlined { m = max(m, e.high); maxHigh.append(m) }
    }

    /// Reads the DIE tree of one unit, recording subprogram names and inlined calls.
    func readUnit(_ c: inout ByteCursor, unitStart: Int, version: UInt64, offsetSize: Int,
                          addressSize: Int, abbrevs: [UInt64: Abbrev]) {
        var depth: Int32 = 0
        // Unit attributes the rest depends on (DWARF 5 may list them after their users,
        // so the unit DIE's own attributes are resolved once it has been read).
        var lowPC: UInt64 = 0
        var strOffsetsBase: UInt64? = nil, addrBase: UInt64 = 0, rnglistsBase: UInt64? = nil
        var fileTable: (start: Int, count: Int, first: Int)? = nil
        var stmtList: UInt64? = nil
        var first = true
        var attrs: [(name: UInt64, value: FormValue)] = []

        func address(_ v: FormValue) -> UInt64? {
            switch v.kind {
            case .address: return v.value
            case .addressIndex:
                guard let s = sections[".debug_addr"] else { return nil }
                var a = ByteCursor(s, at: Int(clamping: addrBase &+ v.value &* UInt64(addressSize)))
                let r = a.uint(addressSize)
                return a.failed ? nil : r
            default: return nil
            }
        }

        /// Calls `add` with each non-empty code range of a DIE (low_pc/high_pc or ranges).
        func forEachRange(low: UInt64?, high: FormValue?, ranges: FormValue?, _ add: (UInt64, UInt64) -> Void) {
            func checked(_ lo: UInt64, _ hi: UInt64) { if hi > lo { add(lo, hi) } }
            if let low, let high {
                if high.kind == .constant { checked(low, low &+ high.value) } else if let hi = address(high) { checked(low, hi) }
            } else if let ranges {
                readRanges(ranges, version: version, base: lowPC, addressSize: addressSize, offsetSize: offsetSize,
                           rnglistsBase: rnglistsBase, address: { address(FormValue(kind: .addressIndex, value: $0)) },
                           checked)
            }
        }

        while !c.atEnd && !c.failed {
            let dieOffset = c.pos
            let code = c.uleb()
            if code == 0 { depth -= 1; if depth <= 0 && !first { break }; continue }
            guard let abbrev = abbrevs[code] else { return }
            attrs.removeAll(keepingCapacity: true)
            let wanted = abbrev.tag == 0x11 || abbrev.tag == 0x2e || abbrev.tag == 0x1d
            for a in abbrev.attrs {
                let v = readForm(&c, form: a.form, offsetSize: offsetSize, addressSize: addressSize,
                                 version: version, implicitConst: a.implicitConst)
                if wanted { attrs.append((a.name, v)) }
            }
            if c.failed { return }

            switch abbrev.tag {
            case 0x11, 0x4a:   // compile_unit, skeleton_unit
                guard first else { break }
                for (name, v) in attrs {
                    switch name {
                    case 0x72: strOffsetsBase = v.value          // str_offsets_base
                    case 0x73: addrBase = v.value                // addr_base
                    case 0x74: rnglistsBase = v.value            // rnglists_base
                    case 0x10: stmtList = v.value                // stmt_list
                    default: break
                    }
                }
                if let low = attrs.first(where: { $0.name == 0x11 }) { lowPC = address(low.value) ?? 0 }
                if let offset = stmtList, let table = fileTables[offset] {
                    fileTable = table
                    // Before DWARF 5 the line table leaves out the compilation directory
                    // that relative paths are relative to; the unit has it.
                    if let dir = attrs.first(where: { $0.name == 0x1b }),   // comp_dir
                       case let compDir = string(dir.value, strOffsetsBase: strOffsetsBase, offsetSize: offsetSize),
                       !compDir.isEmpty, relativePathsResolved.insert(offset).inserted {
                        for i in table.start..<(table.start + table.count) where !files[i].hasPrefix("/") {
                            files[i] = join(compDir, files[i])
                        }
                    }
                }
            case 0x2e:         // subprogram
                var link: FormValue? = nil
                var name: String? = nil, plainName: String? = nil
                var low: UInt64? = nil, highValue: FormValue? = nil, ranges: FormValue? = nil
                for (n, v) in attrs {
                    switch n {
                    case 0x6e, 0x2007: name = string(v, strOffsetsBase: strOffsetsBase, offsetSize: offsetSize)   // linkage_name
                    case 0x03: plainName = string(v, strOffsetsBase: strOffsetsBase, offsetSize: offsetSize)       // name
                    case 0x47, 0x31: link = v                                                                        // specification, abstract_origin
                    case 0x11: low = address(v)                                                                      // low_pc
                    case 0x12: highValue = v                                                                         // high_pc
                    case 0x55: ranges = v                                                                            // ranges
                    default: break
                    }
                }
                // Code at address 0 belongs to a copy the linker discarded.
                forEachRange(low: low, high: highValue, ranges: ranges) { lo, hi in
                    if lo != 0 { functions.append((lo, hi, dieOffset)) }
                }
                // The linkage name identifies a Swift function; a definition often carries
                // only a link to its declaration; C functions have only a plain name.
                if let name, !name.isEmpty {
                    subprogramName[dieOffset] = name
                } else if let l = link, let target = reference(l, unitStart: unitStart) {
                    subprogramLink[dieOffset] = target
                } else if let plainName, !plainName.isEmpty {
                    subprogramName[dieOffset] = plainName
                }
            case 0x1d:         // inlined_subroutine
                var origin: Int? = nil, low: UInt64? = nil, highValue: FormValue? = nil, ranges: FormValue? = nil
                var callFile: UInt64 = 0, callLine: UInt64 = 0
                for (n, v) in attrs {
                    switch n {
                    case 0x31: origin = reference(v, unitStart: unitStart)   // abstract_origin
                    case 0x11: low = address(v)                              // low_pc
                    case 0x12: highValue = v                                 // high_pc
                    case 0x55: ranges = v                                    // ranges
                    case 0x58: callFile = v.value                            // call_file
                    case 0x59: callLine = v.value                            // call_line
                    default: break
                    }
                }
                guard let origin else { break }
                var fileIndex: Int32 = -1
                if let t = fileTable, callFile >= UInt64(t.first), callFile - UInt64(t.first) < UInt64(t.count) {
                    fileIndex = Int32(t.start + Int(callFile) - t.first)
                }
                forEachRange(low: low, high: highValue, ranges: ranges) { lo, hi in
                    if lo != 0 {
                        inlined.append(InlinedCall(low: lo, high: hi, depth: depth, callLine: Int32(clamping: callLine),
                                                   callFile: fileIndex, origin: origin))
                    }
                }
            default: break
            }
            first = false
            if abbrev.hasChildren { depth += 1 } else if depth == 0 { break }
        }
    }

    func reference(_ v: FormValue, unitStart: Int) -> Int? {
        switch v.kind {
        case .ref: return unitStart + Int(clamping: v.value)
        case .refAddr: return Int(clamping: v.value)
        default: return nil
        }
    }

    /// Calls `add` for each address range of a DW_AT_ranges value: .debug_ranges before
    /// DWARF 5, .debug_rnglists from 5.
    func readRanges(_ v: FormValue, version: UInt64, base unitBase: UInt64, addressSize: Int, offsetSize: Int,
                            rnglistsBase: UInt64?, address: (UInt64) -> UInt64?, _ add: (UInt64, UInt64) -> Void) {
        let maxAddress: UInt64 = addressSize == 8 ? .max : 0xffff_ffff
        var base = unitBase
        if version < 5 {
            guard v.kind == .secOffset || v.kind == .constant, let s = sections[".debug_ranges"] else { return }
            var c = ByteCursor(s, at: Int(clamping: v.value))
            while !c.failed {
                let begin = c.uint(addressSize), end = c.uint(addressSize)
                if c.failed || (begin == 0 && end == 0) { return }
                if begin == maxAddress { base = end; continue }
                add(base &+ begin, base &+ end)
            }
            return
        }
        guard let s = sections[".debug_rnglists"] else { return }
        var offset: UInt64
        if v.kind == .rangeListIndex {
            guard let listBase = rnglistsBase else { return }
            var t = ByteCursor(s, at: Int(clamping: listBase &+ v.value &* UInt64(offsetSize)))
            offset = listBase &+ t.uint(offsetSize)
            if t.failed { return }
        } else {
            offset = v.value
        }
        var c = ByteCursor(s, at: Int(clamping: offset))
        while !c.failed {
            switch c.u8() {
            case 0: return                                                            // end_of_list
            case 1: guard let b = address(c.uleb()) else { return }; base = b         // base_addressx
            case 2:                                                                   // startx_endx
                guard let b = address(c.uleb()), let e = address(c.uleb()) else { return }
                add(b, e)
            case 3:                                                                   // startx_length
                guard let b = address(c.uleb()) else { return }
                add(b, b &+ c.uleb())
            case 4: let b = c.uleb(), e = c.uleb(); add(base &+ b, base &+ e)         // offset_pair
            case 5: base = c.uint(addressSize)                                        // base_address
            case 6: let b = c.uint(addressSize), e = c.uint(addressSize); add(b, e)   // start_end
            case 7: let b = c.uint(addressSize); add(b, b &+ c.uleb())                // start_length
            default: return
            }
        }
    }
}
