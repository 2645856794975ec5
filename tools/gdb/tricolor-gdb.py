# Tricolor's gdb extension (the counterpart of Go's src/runtime/runtime-gdb.py).
#
# Reads Tricolor heaps in a live process (gdb -p PID) or a core file through the
# runtime's C-visible debug descriptor `tricolor_debug_descriptor` (CTricolor's
# ctricolor.h, filled by Observability/DebugDescriptor.swift): field offsets and
# constants by name, and one slot per live heap. It never relies on gdb understanding
# Swift types. Commands (output agrees with the in-process API):
#
#   tricolor heap [N]        the allocator state (Heap.allocatorState())
#   tricolor object ADDR     what is at an address (Heap.inspect(_:))
#   tricolor mutators [N]    attached mutators: status, stack depth, frames (checked mode)
#   tricolor memstats [N]    the heap's counters (MemStats names)
#   tricolor spans CLASS [N] the spans of a size class
#
# N selects a heap when the process has several (default 0). Loaded automatically from
# the binary's .debug_gdb_scripts section once auto-loading is allowed
# (`add-auto-load-safe-path /path/to/binary` in ~/.gdbinit), or by hand with
# `source tools/gdb/tricolor-gdb.py`. See docs/gdb.md.
#
# What Swift keeps in its own collections is read from the C copies the runtime keeps
# for debuggers: a span's lifecycle specials (MSpan.debugSpecials) and, in checked mode,
# a mutator's shadow-stack frames (MutatorState.debugFrames). The sampled allocation
# stacks that Heap.inspect shows live in Swift arrays and are not read here. Keep this
# file in sync with the descriptor (version 1) and run Scripts/embed-gdb-script.py
# after editing it.

import struct

import gdb

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


def _mem(addr, n):
    return bytes(gdb.selected_inferior().read_memory(addr, n))


def u64(addr):
    return struct.unpack("<Q", _mem(addr, 8))[0]


def u32(addr):
    return struct.unpack("<I", _mem(addr, 4))[0]


def u16(addr):
    return struct.unpack("<H", _mem(addr, 2))[0]


def u8(addr):
    return _mem(addr, 1)[0]


def cstring(addr, limit=4096):
    out = b""
    while len(out) < limit:
        chunk = _mem(addr + len(out), 64)
        i = chunk.find(b"\0")
        if i >= 0:
            return (out + chunk[:i]).decode("utf-8", "replace")
        out += chunk
    return out.decode("utf-8", "replace")


def hx(v):
    return "0x%x" % v


def read_fields(addr, count):
    d = {}
    for i in range(count):
        e = addr + i * 56
        raw = _mem(e, 48)
        name = raw[: raw.index(b"\0")].decode()
        d[name] = u64(e + 48)
    return d


class Descriptor(object):
    def __init__(self):
        try:
            self.addr = int(gdb.parse_and_eval("(unsigned long)&tricolor_debug_descriptor"))
        except gdb.error:
            raise gdb.GdbError("no tricolor_debug_descriptor symbol: is this a program using Tricolor?")
        magic = _mem(self.addr, 16)
        if not magic.startswith(b"tricolor-debug"):
            raise gdb.GdbError("tricolor_debug_descriptor has a bad magic: %r" % magic)
        self.version = u64(self.addr + 16)
        if self.version != 1:
            raise gdb.GdbError("debug descriptor version %d; this script knows version 1" % self.version)
        self.max_heaps = u64(self.addr + 24)
        fields, count = u64(self.addr + 32), u64(self.addr + 40)
        if fields == 0:
            raise gdb.GdbError("no heap was ever created in this process")
        self.L = read_fields(fields, count)
        self.heaps = []
        for i in range(self.max_heaps):
            rec = self.addr + 48 + i * 48
            h = u64(rec)
            if h > 1:
                self.heaps.append(HeapView(self, rec))


class HeapView(object):
    def __init__(self, desc, rec):
        self.L = desc.L
        self.rec = rec
        self.obj = u64(rec)
        self.F = read_fields(u64(rec + 8), u64(rec + 16))
        self.arena_base = self.F["arenaBase"]
        self.reserved = self.F["reservedBytes"]
        self.shared = self.F["shared"]

    # -- words --
    def shared_word(self, name):
        return u64(self.shared + self.L["shared." + name])

    def sweepgen(self):
        return self.shared_word("sweepgen") & MASK32

    def phase(self):
        return {0: "off", 1: "mark", 2: "mark termination"}.get(self.shared_word("phase"), "?")

    def type_name(self, tid):
        if tid == 0:
            return "<bytes>"
        count = u64(self.rec + 40)
        if tid >= count:
            return "<type %d>" % tid
        p = u64(u64(self.rec + 32) + 8 * tid)
        return cstring(p) if p else "<type %d>" % tid

    def type_info(self, tid):
        t = self.F["types"] + tid * self.L["TypeInfo.size"]
        size = u64(t + self.L["TypeInfo.bytes"])
        n = u64(t + self.L["TypeInfo.numPtrWords"])
        pw = u64(t + self.L["TypeInfo.ptrWords"])
        words = [u32(pw + 4 * k) for k in range(n)] if pw else []
        return size, words

    # -- spans --
    def span_of(self, p):
        off = (p - self.arena_base) & MASK64
        if off >= self.reserved:
            return None
        arena = u64(self.F["arenas"] + 8 * (off >> self.L["arenaLogBytes"]))
        if arena == 0:
            return None
        table = u64(arena + self.L["HeapArena.spans"])
        s = u64(table + 8 * ((off >> self.L["pageShift"]) & (self.L["pagesPerArena"] - 1)))
        return s or None

    def arena_mapped(self, index):
        return u64(self.F["arenas"] + 8 * index) != 0

    def span(self, s):
        return Span(self, s)

    def grown_pages(self):
        return self.shared_word("heapSys") >> self.L["pageShift"]

    def mutators(self):
        out = []
        m = u64(self.rec + 24)
        seen = 0
        while m and seen < 100000:
            out.append(Mutator(self, m))
            m = u64(m + self.L["MutatorState.next"])
            seen += 1
        return out

    def cached_spans(self):
        out = {}
        for m in self.mutators():
            for s in m.cached_spans():
                out[s] = m.id
        return out

    def all_spans(self):
        """(span address, Span) for every span start, in address order."""
        p = 0
        grown = self.grown_pages()
        shift = self.L["pageShift"]
        while p < grown:
            addr = self.arena_base + (p << shift)
            s = self.span_of(addr)
            if s is None:
                p += 1
                continue
            sp = Span(self, s)
            if sp.start != addr or sp.npages == 0:
                p += 1
                continue
            yield sp
            p += sp.npages

    def page_used(self, page):
        return (u64(self.F["pageBitmap"] + 8 * (page // 64)) >> (page % 64)) & 1

    def page_scavenged(self, page):
        return (u64(self.F["pageScavenged"] + 8 * (page // 64)) >> (page % 64)) & 1

    def central_heads(self, spc):
        c = self.F["centrals"] + spc * self.L["MCentral.size"]
        heads = u64(c + self.L["MCentral.heads"])
        return [u64(heads + 8 * k) for k in range(4)]


class Span(object):
    def __init__(self, heap, s):
        L = heap.L
        self.h = heap
        self.addr = s
        self.start = u64(s + L["MSpan.startAddr"])
        self.npages = u64(s + L["MSpan.npages"])
        self.elem = u64(s + L["MSpan.elemSize"])
        self.nelems = u64(s + L["MSpan.nelems"])
        self.alloc_count = u64(s + L["MSpan.allocCount"])
        self.free_index = u64(s + L["MSpan.freeIndex"])
        self.alloc_cache = u64(s + L["MSpan.allocCache"])
        self.held_cache = u64(s + L["MSpan.heldCache"])
        self.alloc_bits = u64(s + L["MSpan.allocBits"])
        # One mark byte per slot; binaries before the mark table kept one bit per slot.
        self.mark_bytes = u64(s + L["MSpan.gcmarkBytes"]) if "MSpan.gcmarkBytes" in L else None
        self.mark_bits = u64(s + L["MSpan.gcmarkBits"])
        self.type_ids = u64(s + L["MSpan.typeIDs"])
        self.limit = u64(s + L["MSpan.limit"])
        self.large_type = u32(s + L["MSpan.largeType"])
        self.sweepgen = u32(s + L["MSpan.sweepgen"])
        self.div_mul = u32(s + L["MSpan.divMul"])
        self.spc = u8(s + L["MSpan.spanClass"])
        self.state = u8(s + L["MSpan.state"])
        self.bitmap_words = u16(s + L["MSpan.bitmapWords"])
        self.next = u64(s + L["MSpan.next"])

    @property
    def size_class(self):
        return self.spc >> 1

    @property
    def noscan(self):
        return self.spc & 1 == 1

    @property
    def large(self):
        return self.size_class == 0

    @property
    def manual(self):
        return self.state == self.h.L["spanState.manual"]

    @property
    def in_use(self):
        return self.state == self.h.L["spanState.inUse"]

    def valid_mask(self, base):
        if base >= self.nelems:
            return 0
        n = self.nelems - base
        return MASK64 if n >= 64 else (1 << n) - 1

    def allocated_word(self, w):
        lo = w * 64
        if lo + 64 <= self.free_index:
            bits = MASK64
        elif lo == self.free_index:
            bits = ~(self.alloc_cache | self.held_cache) & MASK64
        else:
            bits = u64(self.alloc_bits + 8 * w)
        return bits & self.valid_mask(lo)

    def is_allocated(self, idx):
        return idx < self.nelems and (self.allocated_word(idx // 64) >> (idx % 64)) & 1 == 1

    def is_marked(self, idx):
        if self.mark_bytes is None:
            return (u64(self.mark_bits + 8 * (idx // 64)) >> (idx % 64)) & 1 == 1
        return u8(self.mark_bytes + idx) != 0

    def count_allocated(self):
        return sum(bin(self.allocated_word(w)).count("1") for w in range(self.bitmap_words))

    def object_index(self, p):
        return (((p - self.start) & MASK64) * self.div_mul & MASK64) >> 32

    def in_use_count(self, cached):
        if self.manual:
            return self.alloc_count
        return self.count_allocated() if self.addr in cached else self.alloc_count


def sweep_status(g, sg):
    d = (g - sg) & MASK32
    return {(MASK32 - 1): "needs sweeping", MASK32: "being swept", 0: "swept",
            1: "cached (needs sweeping)", 3: "cached"}.get(d, "sweepgen %d out of step" % g)


class Mutator(object):
    def __init__(self, heap, m):
        L = heap.L
        self.h = heap
        self.addr = m
        self.id = u64(m + L["MutatorState.id"])
        self.thread = u64(m + L["MutatorState.threadID"])
        st = u8(m + L["MutatorState.status"])   # a Swift enum of four cases: one byte
        self.status = {L["status.running"]: "running", L["status.parked"]: "parked",
                       L["status.blocking"]: "blocking", L["status.detached"]: "detached"}.get(st, "?")
        self.stack = u64(m + L["MutatorState.stack"])
        self.top = u64(m + L["MutatorState.stackTop"])
        self.cap = u64(m + L["MutatorState.stackCap"])
        self.native = (u64(m + L["MutatorState.nativeStackHi"]) - u64(m + L["MutatorState.nativeStackLo"])) & MASK64
        self.mcache = u64(m + L["MutatorState.mcache"])
        self.checked = heap.F.get("checked", 0) != 0 and "MutatorState.debugFrames" in L

    def frames(self):
        """(offset, slots) of each recorded frame, outermost first (checked mode)."""
        L = self.h.L
        p = u64(self.addr + L["MutatorState.debugFrames"])
        n = u64(self.addr + L["MutatorState.debugFrameCount"])
        if p == 0 or n == 0 or n > 1 << 24:
            return []
        size = L["frame.size"]
        raw = _mem(p, n * size)
        return [(struct.unpack_from("<Q", raw, k * size + L["frame.offset"])[0],
                 struct.unpack_from("<Q", raw, k * size + L["frame.slots"])[0]) for k in range(n)]

    def frames_text(self):
        """The lines AllocatorState.description prints under the mutator."""
        if not self.checked:
            return "    frames are recorded in checked mode only\n"
        frames = self.frames()
        if not frames:
            return "    no frames\n"
        stack = _mem(self.stack, self.top * 8) if self.top else b""
        out = ""
        for i, (off, n) in enumerate(frames):
            lo = min(off, self.top)
            hi = lo + min(n, self.top - lo)
            roots = sum(1 for k in range(lo, hi) if struct.unpack_from("<Q", stack, 8 * k)[0] != 0)
            out += "    frame %d: slots %d..<%d (%d slot%s, %d root%s)\n" % (
                i, off, off + n, n, "" if n == 1 else "s", roots, "" if roots == 1 else "s")
        return out

    def cached_spans(self):
        spans = u64(self.mcache + self.h.L["MCache.spans"])
        empty = self.h.F["emptySpan"]
        out = []
        for i in range(self.h.L.get("numCacheSlots", self.h.L["numSpanClasses"])):
            s = u64(spans + 8 * i)
            if s != empty:
                out.append(s)
        return out

    def batched_spans(self):
        """Full spans waiting in the mutator's batch for their central list (MCache.uncached)."""
        return self._span_lists("MCache.uncached")

    def stashed_spans(self):
        """Swept spans with free slots the mutator took ahead from its central list (MCache.stash)."""
        return self._span_lists("MCache.stash")

    def _span_lists(self, field):
        heads = u64(self.mcache + self.h.L[field])
        out = []
        for i in range(self.h.L["numSpanClasses"]):
            s = u64(heads + 8 * i)
            seen = 0
            while s and seen < 100000:
                out.append(s)
                s = u64(s + self.h.L["MSpan.next"])
                seen += 1
        return out

    def roots(self):
        return sum(1 for i in range(self.top) if u64(self.stack + 8 * i) != 0)

    def line(self):
        return ("  mutator %d thread %d %s: stack depth %d slots (%d roots) of %d, native stack %d bytes, %d cached spans"
                % (self.id, self.thread, self.status, self.top, self.roots(), self.cap, self.native, len(self.cached_spans())))


def rpad(s, n):
    s = str(s)
    return " " + s if len(s) >= n else " " * (n - len(s)) + s


def heap_state(h):
    """The text of AllocatorState.description."""
    L = h.L
    sg = h.sweepgen()
    nclasses = L["numSpanClasses"]
    rows = {}

    def row(i):
        if i not in rows:
            rows[i] = dict(cached=0, ps=0, pu=0, fs=0, fu=0, spans=0, slots=0, inuse=0, span_bytes=0, bytes_in_use=0)
        return rows[i]

    mutators = h.mutators()
    for m in mutators:
        for s in m.cached_spans():
            row(Span(h, s).spc)["cached"] += 1
        for s in m.batched_spans():
            row(Span(h, s).spc)["fs"] += 1
        for s in m.stashed_spans():
            row(Span(h, s).spc)["ps"] += 1
    ps = (sg // 2) % 2
    for i in range(nclasses):
        heads = h.central_heads(i)
        for k in range(4):
            n = 0
            s = heads[k]
            while s:
                n += 1
                s = u64(s + L["MSpan.next"])
            if n == 0:
                continue
            r = row(i)
            if k == ps:
                r["ps"] += n
            elif k == 1 - ps:
                r["pu"] += n
            elif k == 2 + ps:
                r["fs"] += n
            else:
                r["fu"] += n
    cached = h.cached_spans()
    stack_spans = stack_bytes = 0
    shift = L["pageShift"]
    for sp in h.all_spans():
        if sp.manual:
            stack_spans += 1
            stack_bytes += sp.npages << shift
            continue
        if not sp.in_use:
            continue
        r = row(sp.spc)
        n = sp.in_use_count(cached)
        r["spans"] += 1
        r["slots"] += sp.nelems
        r["inuse"] += n
        r["span_bytes"] += sp.npages << shift
        r["bytes_in_use"] += (sp.limit - sp.start) * n if sp.large else n * sp.elem
    live = h.shared_word("heapLive")
    trig = h.shared_word("trigger")
    goal = h.shared_word("heapGoal")
    out = "allocator state: sweepgen %d, phase %s, heapLive %d, trigger %d, goal %d\n" % (sg, h.phase(), live, trig, goal)
    out += "spanclass class   size  cached  p.swept p.unswpt  f.swept f.unswpt   spans    slots    inuse   frag\n"
    for i in sorted(rows):
        r = rows[i]
        size_class = i >> 1
        size = "large" if size_class == 0 else str(L["classToSize.%d" % size_class])
        frag = 0.0 if r["span_bytes"] == 0 else 1 - float(r["bytes_in_use"]) / float(r["span_bytes"])
        out += (rpad("%d%s" % (i, "n" if i & 1 else "s"), 9) + rpad(size_class, 6) + rpad(size, 7) + rpad(r["cached"], 8)
                + rpad(r["ps"], 9) + rpad(r["pu"], 9) + rpad(r["fs"], 9) + rpad(r["fu"], 9) + rpad(r["spans"], 8)
                + rpad(r["slots"], 9) + rpad(r["inuse"], 9) + rpad("%d%%" % int(frag * 100 + 0.5), 7) + "\n")
    grown = h.grown_pages()
    free = scav = longest = run = 0
    buckets = [[0, 0] for _ in range(12)]

    def end_run(run):
        if run > 0:
            k = min(11, run.bit_length() - 1)
            buckets[k][0] += 1
            buckets[k][1] += run

    for p in range(grown):
        if h.page_used(p):
            end_run(run)
            run = 0
        else:
            free += 1
            run += 1
            longest = max(longest, run)
            scav += h.page_scavenged(p)
    end_run(run)
    out += "page heap: %d pages grown, %d free (%d returned to the OS), longest free run %d\n" % (grown, free, scav, longest)
    for k in range(12):
        if buckets[k][0] == 0:
            continue
        lo = 1 << k
        hi = (2 << k) - 1
        rng = "%d+" % lo if k == 11 else ("%d" % lo if hi == lo else "%d-%d" % (lo, hi))
        out += "  free runs of %s pages: %d (%d pages)\n" % (rng, buckets[k][0], buckets[k][1])
    mapped = sum(1 for i in range(h.F["numArenas"]) if h.arena_mapped(i))
    out += "arenas: %d of %d mapped; stacks: %d spans, %d bytes\n" % (mapped, h.F["numArenas"], stack_spans, stack_bytes)
    out += "mutators:\n"
    for m in mutators:
        out += m.line() + "\n" + m.frames_text()
    return out


def describe(h, p):
    """The text of AddressInfo.description (without the sampled stack)."""
    L = h.L
    shift = L["pageShift"]

    def head(kind, note=""):
        return "%s: %s%s\n" % (hx(p), kind, " (%s)" % note if note else "")

    if p == h.F["zeroBase"]:
        return head("zero-size object (zerobase)") + "  specials none\n"
    off = (p - h.arena_base) & MASK64
    if off >= h.reserved:
        return head("not in the heap") + "  specials none\n"
    ai = off >> L["arenaLogBytes"]
    mapped = h.arena_mapped(ai)
    arena = "  arena   #%d at %s%s\n" % (ai, hx(h.arena_base + (ai << L["arenaLogBytes"])), "" if mapped else " (not mapped)")
    if not mapped:
        return head("unmapped arena") + arena + "  specials none\n"
    s = h.span_of(p)
    if s is None:
        page = off >> shift
        if page >= h.grown_pages():
            return head("reserved page (not grown into yet)") + arena + "  specials none\n"
        note = "returned to the OS (scavenged)" if h.page_scavenged(page) else "resident"
        return head("free page", note) + arena + "  specials none\n"
    sp = Span(h, s)
    sg = h.sweepgen()
    cached = h.cached_spans()
    pages = sp.npages
    state = "in use" if sp.in_use else ("stack" if sp.manual else "dead")
    span = "  span    %s-%s %d page%s, %s" % (hx(sp.start), hx(sp.start + (pages << shift)), pages, "" if pages == 1 else "s", state)
    if not sp.manual:
        span += (", class %d%s (spanclass %d), elemsize %d, nelems %d, allocCount %d"
                 % (sp.size_class, " noscan" if sp.noscan else "", sp.spc, sp.elem, sp.nelems, sp.in_use_count(cached)))
        span += "\n          sweepgen %d (heap %d): %s" % (sp.sweepgen, sg, sweep_status(sp.sweepgen, sg))
        if s in cached:
            span += ", in mutator %d's mcache" % cached[s]
    span += "\n"
    if sp.manual:
        note = "a free stack, or a stack cached for reuse"
        for m in h.mutators():
            if m.stack <= p < m.stack + m.cap * 8:
                slot = (p - m.stack) // 8
                note = "mutator %d's shadow stack, slot %d of %d%s" % (m.id, slot, m.cap, " (in use)" if slot < m.top else " (above the top)")
        return head("stack memory", note) + arena + span + "  specials none\n"
    if not sp.in_use:
        return head("free page", "dead span") + arena + "  specials none\n"
    if p >= sp.limit:
        return head("span tail (past the last slot)") + arena + span + "  specials none\n"
    idx = 0 if sp.large else sp.object_index(p)
    base = sp.start + idx * sp.elem
    g = sp.sweepgen
    unswept = g == (sg - 2) & MASK32 or g == (sg + 1) & MASK32
    alloc_bit = sp.is_allocated(idx)
    marked = sp.is_marked(idx)
    live = alloc_bit and (not unswept or marked)
    if sp.large:
        tid = sp.large_type & 0xffff
    elif sp.type_ids:
        tid = u16(sp.type_ids + 2 * idx)
    else:
        tid = 0
    array_bit = L["arrayTypeBit"]
    tid_id = tid & ~array_bit & 0xffff
    size = (sp.limit - sp.start) if sp.large else sp.elem
    if tid_id:
        tsize, words = h.type_info(tid_id)
    else:
        tsize, words = size, []
    is_array = tid & array_bit != 0
    count = 0 if tsize == 0 else (size // tsize if (is_array or sp.large) else 1)
    name = h.type_name(tid_id)
    if live:
        kind, note = "heap object", ""
    else:
        kind = "free slot"
        note = "unreachable: allocated, unmarked, freed when its span is swept" if alloc_bit and unswept else ""
    obj = "  object  %s + %d, slot %d, %d bytes, %s, %s\n" % (hx(base), p - base, idx, size, "allocated" if live else "free",
                                                         "marked" if marked else "unmarked")
    if live or tid_id:
        t = "  type    %s%s" % ("[%d]" % count if is_array else "", name)
        if tid_id:
            t += " (#%d, %d bytes, pointer words [%s])" % (tid_id, tsize, ", ".join(str(w) for w in words))
        if sp.spc == (2 << 1 | 1):
            t += ", tiny block"
        obj += t + "\n"
    specials = specials_of(h, sp, base) if live else "none"
    return head(kind, note) + arena + span + obj + "  specials %s\n" % specials


def specials_of(h, sp, base):
    """The specials line of AddressInfo.description: the span's records for the object
    at base, in the list's order, as Heap.describeSpecial names them; heap-profile
    samples are left out (inspect shows them as the allocation stack)."""
    L = h.L
    if "MSpan.debugSpecials" not in L:
        return "none"
    p = u64(sp.addr + L["MSpan.debugSpecials"])
    n = u32(sp.addr + L["MSpan.debugSpecialCount"])
    if p == 0 or n == 0:
        return "none"
    if n > 1 << 22:
        return "none (the span's copy claims %d records: torn or corrupt)" % n
    size = L["special.size"]
    raw = _mem(p, n * size)
    kinds = {L["specialKind.finalizer"]: "finalizer", L["specialKind.weakHandle"]: "weak",
             L["specialKind.cleanup"]: "cleanup", L["specialKind.swiftBox"]: "box"}
    out = []
    for k in range(n):
        def f(name):
            return struct.unpack_from("<Q", raw, k * size + L["special." + name])[0]
        if f("addr") != base:
            continue
        kind = kinds.get(f("kind"))
        if kind == "finalizer":
            out.append("finalizer")
        elif kind == "weak":
            out.append("weak handle %s" % hx(f("arg")))
        elif kind == "cleanup":
            out.append("cleanup #%d (argument %s)" % (f("id"), hx(f("arg"))))
        elif kind == "box":
            out.append("Swift object box")
    return ", ".join(out) if out else "none"


def memstats(h):
    st = h.shared_word("stackInuse")
    goal = h.shared_word("heapGoal")
    # Spans kept empty in their class are idle, as in Heap.memStats().
    inuse = h.shared_word("heapInuse")
    kept = h.shared_word("keptEmptyBytes")
    kept -= min(kept, h.shared_word("keptEmptyBytesTaken"))
    inuse -= min(inuse, kept)
    rows = [("HeapSys", h.shared_word("heapSys") - st), ("HeapInuse", inuse),
            ("HeapReleased", h.shared_word("heapReleased")), ("StackInuse", st)]
    # GOGC off with no memory limit: memStats() derives Go's near-MaxInt64 goal from
    # figures gdb cannot read; say so instead.
    text = "".join("%s %d\n" % r for r in rows)
    text += "NextGC none (GOGC off, no memory limit)\n" if goal == MASK64 else "NextGC %d\n" % goal
    rows = [("NumGC", h.shared_word("numGC")), ("HeapLive", h.shared_word("heapLive")), ("Sweepgen", h.sweepgen())]
    return text + "".join("%s %d\n" % r for r in rows) + "Phase %s\n" % h.phase()


def spans_of_class(h, size_class):
    cached = h.cached_spans()
    batched = dict((s, m.id) for m in h.mutators() for s in m.batched_spans())
    stashed = dict((s, m.id) for m in h.mutators() for s in m.stashed_spans())
    sg = h.sweepgen()
    out = ""
    n = 0
    for sp in h.all_spans():
        if not sp.in_use or sp.size_class != size_class:
            continue
        n += 1
        where = "mutator %d's mcache" % cached[sp.addr] if sp.addr in cached else (
            "mutator %d's batch for mcentral" % batched[sp.addr] if sp.addr in batched else (
                "mutator %d's stash" % stashed[sp.addr] if sp.addr in stashed else "mcentral"))
        out += ("span %s spanclass %d%s pages %d elemsize %d nelems %d allocCount %d %s, %s\n"
                % (hx(sp.start), sp.spc, "n" if sp.noscan else "s", sp.npages, sp.elem, sp.nelems,
                   sp.in_use_count(cached), sweep_status(sp.sweepgen, sg), where))
    return out + "%d span%s of size class %d\n" % (n, "" if n == 1 else "s", size_class)


def pick_heap(args, index_pos):
    d = Descriptor()
    if not d.heaps:
        raise gdb.GdbError("no live Tricolor heap")
    i = int(args[index_pos]) if len(args) > index_pos else 0
    if i < 0 or i >= len(d.heaps):
        raise gdb.GdbError("heap %d: the process has %d live heap(s)" % (i, len(d.heaps)))
    return d.heaps[i]


class TricolorCommand(gdb.Command):
    """Inspect Tricolor heaps: tricolor heap|object|mutators|memstats|spans."""

    def __init__(self):
        super(TricolorCommand, self).__init__("tricolor", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class HeapCmd(gdb.Command):
    """tricolor heap [N]: the allocator state of heap N (Heap.allocatorState())."""

    def __init__(self):
        super(HeapCmd, self).__init__("tricolor heap", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        gdb.write(heap_state(pick_heap(gdb.string_to_argv(arg), 0)))


class ObjectCmd(gdb.Command):
    """tricolor object ADDR: what is at ADDR (Heap.inspect(_:)), in whichever heap reserves it."""

    def __init__(self):
        super(ObjectCmd, self).__init__("tricolor object", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        if not arg.strip():
            raise gdb.GdbError("usage: tricolor object ADDR")
        p = int(gdb.parse_and_eval(arg)) & MASK64
        d = Descriptor()
        if not d.heaps:
            raise gdb.GdbError("no live Tricolor heap")
        for h in d.heaps:
            if (p - h.arena_base) & MASK64 < h.reserved or p == h.F["zeroBase"]:
                gdb.write(describe(h, p))
                return
        gdb.write(describe(d.heaps[0], p))


class MutatorsCmd(gdb.Command):
    """tricolor mutators [N]: attached mutators of heap N: status, stack depth, and frames (checked mode)."""

    def __init__(self):
        super(MutatorsCmd, self).__init__("tricolor mutators", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        h = pick_heap(gdb.string_to_argv(arg), 0)
        ms = h.mutators()
        gdb.write("mutators:\n" + "".join(m.line() + "\n" + m.frames_text() for m in ms) if ms else "no mutator attached\n")


class MemStatsCmd(gdb.Command):
    """tricolor memstats [N]: heap N's counters, with MemStats names."""

    def __init__(self):
        super(MemStatsCmd, self).__init__("tricolor memstats", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        gdb.write(memstats(pick_heap(gdb.string_to_argv(arg), 0)))


class SpansCmd(gdb.Command):
    """tricolor spans CLASS [N]: the in-use spans of size class CLASS (0: large objects)."""

    def __init__(self):
        super(SpansCmd, self).__init__("tricolor spans", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if not args:
            raise gdb.GdbError("usage: tricolor spans CLASS [HEAP]")
        gdb.write(spans_of_class(pick_heap(args, 1), int(args[0])))


TricolorCommand()
HeapCmd()
ObjectCmd()
MutatorsCmd()
MemStatsCmd()
SpansCmd()
