import Tricolor

// A small Scheme on a Tricolor heap, written with the typed layer: every value is a
// heap object declared once as a `HeapObject` struct and read by field name.
//
// Values: the empty list is the null `Ref`; numbers are `SNum` objects (the only
// pointer-free small type, so the one `Mutator.type(of:)` answers nil for); pairs,
// symbols (interned, each rooted by a `Global`, with a global value cell), closures,
// environments (frames of parallel `vars`/`vals` lists and a parent), primitives,
// strings and the constants #t, #f and unspecified are typed objects whose type the
// runtime records, so no tag word is spent.
//
// Rooting discipline (the README's rules): `eval` and its helpers keep every value they
// need across an allocation in shadow-stack frame slots; a `Ref` held only in a Swift
// local is used before the next allocation, or is reachable from a rooted object that
// is not changed meanwhile (code lists, interned symbols). Tail calls (closure bodies,
// `if`, `begin`, `let`, `cond`, `and`, `or`) replace the frame's expression and
// environment slots and loop, so a tail-recursive loop runs in constant stack.

/// A pair: `car` and `cdr`, each any value.
struct SPair: HeapObject { var car: Ref; var cdr: Ref }
/// An interned symbol with its global value cell.
struct SSymbol: HeapObject { var value: Ref; var id: Int; var bound: Bool }
/// A closure: parameter list (proper or dotted), body, defining environment, name.
struct SClosure: HeapObject { var params: Ref; var body: Ref; var env: Obj<SEnv>; var name: Ref }
/// An environment frame: variables and values as parallel lists, and the parent.
struct SEnv: HeapObject { var vars: Ref; var vals: Ref; var parent: Obj<SEnv> }
/// A primitive procedure: its name and its code.
struct SPrimitive: HeapObject { var name: Obj<SSymbol>; var code: Int }
/// A constant (#t, #f, unspecified), printed by its name.
struct SConst: HeapObject { var name: Obj<SSymbol>; var code: Int }
/// A number. Pointer-free: the runtime records no type for it (see `Mutator.type(of:)`).
struct SNum: HeapObject { var value: Int }
/// A string: its bytes (UTF-8) in a typed byte array.
struct SString: HeapObject { var bytes: ObjArray<UInt8>; var length: Int }

/// The primitive procedures both interpreters provide.
enum Primitive: Int, CaseIterable {
    case add, sub, mul, quotient, remainder, numEq, lt, gt, le, ge
    case cons, car, cdr, setCar, setCdr, list, isNull, isPair, isNumber, isProcedure, isSymbol, eq, not
    case display, newline, error

    var name: String {
        switch self {
        case .add: "+"; case .sub: "-"; case .mul: "*"; case .quotient: "quotient"; case .remainder: "remainder"
        case .numEq: "="; case .lt: "<"; case .gt: ">"; case .le: "<="; case .ge: ">="
        case .cons: "cons"; case .car: "car"; case .cdr: "cdr"; case .setCar: "set-car!"; case .setCdr: "set-cdr!"
        case .list: "list"; case .isNull: "null?"; case .isPair: "pair?"; case .isNumber: "number?"
        case .isProcedure: "procedure?"; case .isSymbol: "symbol?"; case .eq: "eq?"; case .not: "not"
        case .display: "display"; case .newline: "newline"; case .error: "error"
        }
    }
    /// Number of arguments, nil when variadic.
    var arity: Int? {
        switch self {
        case .add, .sub, .mul, .list, .error, .numEq, .lt, .gt, .le, .ge: nil
        case .newline: 0
        case .car, .cdr, .isNull, .isPair, .isNumber, .isProcedure, .isSymbol, .not, .display: 1
        case .cons, .setCar, .setCdr, .eq, .quotient, .remainder: 2
        }
    }
}

/// The Scheme interpreter on a Tricolor heap. Not thread-safe: use it from one thread
/// at a time (each `run` attaches that thread as a mutator for its duration).
public final class HeapScheme {
    /// The heap holding every Scheme value.
    public let heap: Heap
    /// Where `display` and `newline` write.
    public var output: (String) -> Void

    enum Kind { case null, num, pair, symbol, closure, env, primitive, constant, string }

    let pairT: HeapType<SPair>, symT: HeapType<SSymbol>, cloT: HeapType<SClosure>, envT: HeapType<SEnv>
    let primT: HeapType<SPrimitive>, constT: HeapType<SConst>, numT: HeapType<SNum>, strT: HeapType<SString>
    let bytesT: HeapType<UInt8>
    private var symbolIDs: [String: Int] = [:]
    private var symbolNames: [String] = []
    private var symbolRoots: [Global] = []
    private let trueG: Global, falseG: Global, unspecG: Global
    // Special-form symbols (interned: compared by address; rooted by their globals).
    private var sQuote = Ref.null, sIf = Ref.null, sDefine = Ref.null, sSet = Ref.null, sLambda = Ref.null
    private var sBegin = Ref.null, sLet = Ref.null, sCond = Ref.null, sElse = Ref.null, sAnd = Ref.null, sOr = Ref.null

    /// A new interpreter with its own heap.
    public init(configuration: Configuration = Configuration(), output: @escaping (String) -> Void = { print($0, terminator: "") }) throws {
        heap = try Heap(configuration: configuration)
        self.output = output
        pairT = try heap.register(SPair.self)
        symT = try heap.register(SSymbol.self)
        cloT = try heap.register(SClosure.self)
        envT = try heap.register(SEnv.self)
        primT = try heap.register(SPrimitive.self)
        constT = try heap.register(SConst.self)
        numT = try heap.register(SNum.self)
        strT = try heap.register(SString.self)
        bytesT = try heap.register(arrayOf: UInt8.self)
        precondition(!numT.objectType.hasPointers, "SNum must be the pointer-free type")
        trueG = heap.makeGlobal(); falseG = heap.makeGlobal(); unspecG = heap.makeGlobal()
        heap.withMutator { m in
            for (g, name, code) in [(trueG, "#t", 1), (falseG, "#f", 0), (unspecG, "#<unspecified>", 2)] {
                let sym = intern(m, name)
                let c = m.allocate(constT)
                m[c].name = Obj(unchecked: sym)
                m[c].code = code
                m.store(g, c)
            }
            sQuote = intern(m, "quote"); sIf = intern(m, "if"); sDefine = intern(m, "define"); sSet = intern(m, "set!")
            sLambda = intern(m, "lambda"); sBegin = intern(m, "begin"); sLet = intern(m, "let"); sCond = intern(m, "cond")
            sElse = intern(m, "else"); sAnd = intern(m, "and"); sOr = intern(m, "or")
            for p in Primitive.allCases {
                let sym = intern(m, p.name)
                let o = m.allocate(primT)
                m[o].name = Obj(unchecked: sym)
                m[o].code = p.rawValue
                m[Obj<SSymbol>(unchecked: sym)].value = o.ref
                m[Obj<SSymbol>(unchecked: sym)].bound = true
            }
        }
    }

    /// Read and evaluate every form of `source` in the global environment; returns each
    /// form's value as printed (`write` style). Throws the first error (the forms before
    /// it have taken effect).
    public func run(_ source: String) throws -> [String] {
        let data = try Reader.readAll(source)
        return try heap.withMutator { m in
            var results: [String] = []
            for d in data {
                try m.withFrame(slots: 1) { f in
                    f[0] = build(m, d)
                    let v = try eval(m, f[0], .null)
                    results.append(show(m, v))
                }
            }
            return results
        }
    }

    // MARK: values

    func kind(_ m: Mutator, _ x: Ref) -> Kind {
        if x.isNull { return .null }
        guard let t = m.type(of: x) else { return .num }
        switch t.id {
        case pairT.objectType.id: return .pair
        case symT.objectType.id: return .symbol
        case cloT.objectType.id: return .closure
        case envT.objectType.id: return .env
        case primT.objectType.id: return .primitive
        case constT.objectType.id: return .constant
        default: return .string
        }
    }

    func intern(_ m: Mutator, _ name: String) -> Ref {
        if let id = symbolIDs[name] { return symbolRoots[id].value }
        let id = symbolNames.count
        let s = m.allocate(symT)
        m[s].id = id
        let g = heap.makeGlobal()
        m.store(g, s)
        symbolIDs[name] = id
        symbolNames.append(name)
        symbolRoots.append(g)
        return s.ref
    }

    func makeNum(_ m: Mutator, _ v: Int) -> Ref {
        let n = m.allocate(numT)
        m[n].value = v
        return n.ref
    }

    func makeString(_ m: Mutator, _ s: String) -> Ref {
        let utf8 = Array(s.utf8)
        return m.withFrame(slots: 1) { f in
            let o = m.allocate(strT)
            f[0] = o.ref
            let bytes = m.allocateArray(bytesT, count: utf8.count)
            for (i, b) in utf8.enumerated() { m[bytes, i] = b }
            m[o].bytes = bytes
            m[o].length = utf8.count
            return f[0]
        }
    }

    func bool(_ b: Bool) -> Ref { b ? trueG.value : falseG.value }
    var unspecified: Ref { unspecG.value }

    @inline(__always) func pair(_ x: Ref) -> Obj<SPair> { Obj(unchecked: x) }
    @inline(__always) func car(_ m: Mutator, _ x: Ref) -> Ref { m[pair(x)].car }
    @inline(__always) func cdr(_ m: Mutator, _ x: Ref) -> Ref { m[pair(x)].cdr }

    /// Datum → heap data (code is data: the evaluator walks these pairs).
    func build(_ m: Mutator, _ d: Datum) -> Ref {
        switch d {
        case .int(let n): return makeNum(m, n)
        case .string(let s): return makeString(m, s)
        case .bool(let b): return bool(b)
        case .symbol(let s): return intern(m, s)
        case .list(let items, let tail):
            return m.withFrame(slots: 2) { f in
                f[0] = tail.map { build(m, $0) } ?? .null
                for item in items.reversed() {
                    f[1] = build(m, item)
                    let c = m.allocate(pairT)
                    m[c].car = f[1]
                    m[c].cdr = f[0]
                    f[0] = c.ref
                }
                return f[0]
            }
        }
    }

    /// The printed form of a value (`write` style). Does not allocate.
    func show(_ m: Mutator, _ x: Ref, depth: Int = 0) -> String {
        if depth > 100 { return "..." }
        switch kind(m, x) {
        case .null: return "()"
        case .num: return String(m[Obj<SNum>(unchecked: x)].value)
        case .symbol: return symbolNames[m[Obj<SSymbol>(unchecked: x)].id]
        case .constant: return symbolNames[m[m[Obj<SConst>(unchecked: x)].name].id]
        case .primitive: return "#<primitive \(symbolNames[m[m[Obj<SPrimitive>(unchecked: x)].name].id])>"
        case .closure:
            let name = m[Obj<SClosure>(unchecked: x)].name
            return name.isNull ? "#<procedure>" : "#<procedure \(show(m, name))>"
        case .env: return "#<environment>"
        case .string: return "\"" + text(m, x) + "\""
        case .pair:
            var parts: [String] = []
            var p = x
            while kind(m, p) == .pair && parts.count < 10_000 {
                parts.append(show(m, car(m, p), depth: depth + 1))
                p = cdr(m, p)
            }
            return "(" + parts.joined(separator: " ") + (p.isNull ? "" : " . " + show(m, p, depth: depth + 1)) + ")"
        }
    }

    func text(_ m: Mutator, _ x: Ref) -> String {
        let s = Obj<SString>(unchecked: x)
        let bytes = m[s].bytes
        return String(decoding: (0..<m[s].length).map { m[bytes, $0] }, as: UTF8.self)
    }

    // MARK: evaluation

    /// Evaluate `x0` in `env0` (null: the global environment). Both must be reachable
    /// from a root when called; the result is not rooted.
    func eval(_ m: Mutator, _ x0: Ref, _ env0: Obj<SEnv>) throws -> Ref {
        let f = m.pushFrame(slots: 4)      // 0 expression, 1 environment, 2 procedure, 3 arguments
        defer { m.popFrame(f) }
        f[0] = x0
        f[1] = env0.ref
        while true {
            let x = f[0]
            switch kind(m, x) {
            case .symbol: return try lookup(m, x, Obj(unchecked: f[1]))
            case .pair: break
            case .null: throw SchemeError.syntax("cannot evaluate ()")
            default: return x
            }
            let op = car(m, x)
            if op == sQuote {
                return car(m, try rest(m, x, 1, "quote"))
            } else if op == sIf {
                let args = try rest(m, x, 2, "if")
                let test = try eval(m, car(m, args), Obj(unchecked: f[1]))
                let branches = cdr(m, cdr(m, f[0]))
                if test != falseG.value {
                    f[0] = car(m, branches)
                } else if !cdr(m, branches).isNull {
                    f[0] = car(m, cdr(m, branches))
                } else {
                    return unspecified
                }
                continue
            } else if op == sDefine {
                let target = car(m, try rest(m, x, 2, "define"))
                let name: Ref
                if kind(m, target) == .pair {             // (define (name . params) body…)
                    name = car(m, target)
                    f[2] = makeClosure(m, params: cdr(m, target), body: cdr(m, cdr(m, f[0])), env: f[1], name: name)
                } else {
                    name = target
                    f[2] = try eval(m, car(m, cdr(m, cdr(m, x))), Obj(unchecked: f[1]))
                }
                guard kind(m, name) == .symbol else { throw SchemeError.syntax("define: not a symbol: \(show(m, name))") }
                define(m, name, f)
                return name
            } else if op == sSet {
                let args = try rest(m, x, 2, "set!")
                let name = car(m, args)
                guard kind(m, name) == .symbol else { throw SchemeError.syntax("set!: not a symbol: \(show(m, name))") }
                f[2] = try eval(m, car(m, cdr(m, args)), Obj(unchecked: f[1]))
                try assign(m, name, f[2], Obj(unchecked: f[1]))
                return unspecified
            } else if op == sLambda {
                _ = try rest(m, x, 2, "lambda")
                return makeClosure(m, params: car(m, cdr(m, x)), body: cdr(m, cdr(m, x)), env: f[1], name: .null)
            } else if op == sBegin {
                guard let last = try evalAllButLast(m, cdr(m, x), f) else { return unspecified }
                f[0] = last
                continue
            } else if op == sLet {
                let bindings = car(m, try rest(m, x, 2, "let"))
                f[2] = try collect(m, bindings, Obj(unchecked: f[1]), .letNames)
                f[3] = try collect(m, car(m, cdr(m, f[0])), Obj(unchecked: f[1]), .letValues)
                let e = m.allocate(envT)
                m[e].vars = f[2]
                m[e].vals = f[3]
                m[e].parent = Obj(unchecked: f[1])
                f[1] = e.ref
                guard let last = try evalAllButLast(m, cdr(m, cdr(m, f[0])), f) else { return unspecified }
                f[0] = last
                continue
            } else if op == sCond {
                var clauses = cdr(m, x)
                var chosen: Ref? = nil
                while kind(m, clauses) == .pair {
                    let clause = car(m, clauses)
                    guard kind(m, clause) == .pair else { throw SchemeError.syntax("cond: bad clause \(show(m, clause))") }
                    if car(m, clause) == sElse { chosen = cdr(m, clause); break }
                    let test = try eval(m, car(m, clause), Obj(unchecked: f[1]))
                    if test != falseG.value {
                        if cdr(m, clause).isNull { return test }
                        chosen = cdr(m, clause)
                        break
                    }
                    clauses = cdr(m, clauses)
                }
                guard let body = chosen, let last = try evalAllButLast(m, body, f) else { return unspecified }
                f[0] = last
                continue
            } else if op == sAnd || op == sOr {
                var p = cdr(m, x)
                if p.isNull { return bool(op == sAnd) }
                while !cdr(m, p).isNull {
                    let v = try eval(m, car(m, p), Obj(unchecked: f[1]))
                    if (v == falseG.value) == (op == sAnd) { return v }
                    p = cdr(m, p)
                }
                f[0] = car(m, p)
                continue
            }
            // An application: the procedure, then the arguments, left to right.
            f[2] = try eval(m, op, Obj(unchecked: f[1]))
            f[3] = try collect(m, cdr(m, f[0]), Obj(unchecked: f[1]), .arguments)
            switch kind(m, f[2]) {
            case .primitive:
                return try applyPrimitive(m, f)
            case .closure:
                let c = Obj<SClosure>(unchecked: f[2])
                try checkArity(m, c, f[3])
                let e = m.allocate(envT)
                m[e].vars = m[c].params
                m[e].vals = f[3]
                m[e].parent = m[c].env
                f[1] = e.ref
                guard let last = try evalAllButLast(m, m[Obj<SClosure>(unchecked: f[2])].body, f) else { return unspecified }
                f[0] = last                                // the tail call: loop, same frame
            default:
                throw SchemeError.notAProcedure(show(m, f[2]))
            }
        }
    }

    /// `x`'s operands after checking there are at least `n`.
    func rest(_ m: Mutator, _ x: Ref, _ n: Int, _ form: String) throws -> Ref {
        let args = cdr(m, x)
        var p = args
        for _ in 0..<n {
            guard kind(m, p) == .pair else { throw SchemeError.syntax("\(form): expected at least \(n) operands in \(show(m, x))") }
            p = cdr(m, p)
        }
        return args
    }

    /// Evaluate every expression of `body` but the last (in the frame's environment)
    /// and return the last, for the caller to evaluate as a tail call. The body list is
    /// reachable from the frame (its expression or procedure slot) throughout.
    func evalAllButLast(_ m: Mutator, _ body: Ref, _ f: Frame) throws -> Ref? {
        var p = body
        if p.isNull { return nil }
        while !cdr(m, p).isNull {
            _ = try eval(m, car(m, p), Obj(unchecked: f[1]))
            p = cdr(m, p)
        }
        return car(m, p)
    }

    /// What `collect` makes of each element.
    enum CollectMode { case arguments, letNames, letValues }

    /// A fresh list: each element of `list` evaluated (`.arguments`), or of a `let`'s
    /// bindings ((name expr) …) each name (`.letNames`) or each expression's value
    /// (`.letValues`). `list` is reachable from the caller's frame.
    func collect(_ m: Mutator, _ list: Ref, _ env: Obj<SEnv>, _ mode: CollectMode) throws -> Ref {
        let f = m.pushFrame(slots: 5)      // 0 cursor, 1 env, 2 head, 3 last cell, 4 value
        defer { m.popFrame(f) }
        f[0] = list
        f[1] = env.ref
        while !f[0].isNull {
            guard kind(m, f[0]) == .pair else { throw SchemeError.syntax("improper list: \(show(m, list))") }
            let item = car(m, f[0])
            switch mode {
            case .arguments:
                f[4] = try eval(m, item, Obj(unchecked: f[1]))
            case .letNames, .letValues:
                guard kind(m, item) == .pair, kind(m, car(m, item)) == .symbol, kind(m, cdr(m, item)) == .pair else {
                    throw SchemeError.syntax("let: bad binding \(show(m, item))")
                }
                f[4] = mode == .letNames ? car(m, item) : try eval(m, car(m, cdr(m, item)), Obj(unchecked: f[1]))
            }
            let c = m.allocate(pairT)
            m[c].car = f[4]
            if f[2].isNull { f[2] = c.ref } else { m[pair(f[3])].cdr = c.ref }
            f[3] = c.ref
            f[0] = cdr(m, f[0])
        }
        return f[2]
    }

    func makeClosure(_ m: Mutator, params: Ref, body: Ref, env: Ref, name: Ref) -> Ref {
        // params, body and env are reachable from the caller's frame (its expression and
        // environment slots); name is a symbol (rooted).
        let c = m.allocate(cloT)
        m[c].params = params
        m[c].body = body
        m[c].env = Obj(unchecked: env)
        m[c].name = name
        return c.ref
    }

    func checkArity(_ m: Mutator, _ c: Obj<SClosure>, _ args: Ref) throws {
        var n = 0, p = m[c].params
        while kind(m, p) == .pair { n += 1; p = cdr(m, p) }
        let variadic = !p.isNull
        var k = 0, a = args
        while !a.isNull { k += 1; a = cdr(m, a) }
        if k != n && !(variadic && k > n) {
            let name = m[c].name
            throw SchemeError.wrongArity(procedure: name.isNull ? "#<procedure>" : show(m, name),
                                         expected: variadic ? "at least \(n)" : "\(n)", got: k)
        }
    }

    /// The binding of `name`: the values cell in an environment frame, or nil for the
    /// symbol's global cell. A dotted parameter list binds its tail to the rest of the
    /// values (`restOf` then holds that list).
    func find(_ m: Mutator, _ name: Ref, _ env: Obj<SEnv>) -> (cell: Ref, rest: Ref?)? {
        var e = env
        while !e.isNull {
            var vars = m[e].vars, vals = m[e].vals
            while kind(m, vars) == .pair {
                if car(m, vars) == name { return (vals, nil) }
                vars = cdr(m, vars)
                vals = cdr(m, vals)
            }
            if vars == name { return (.null, vals) }
            e = m[e].parent
        }
        return nil
    }

    func lookup(_ m: Mutator, _ name: Ref, _ env: Obj<SEnv>) throws -> Ref {
        if let b = find(m, name, env) { return b.rest ?? car(m, b.cell) }
        let s = Obj<SSymbol>(unchecked: name)
        guard m[s].bound else { throw SchemeError.unboundVariable(show(m, name)) }
        return m[s].value
    }

    func assign(_ m: Mutator, _ name: Ref, _ value: Ref, _ env: Obj<SEnv>) throws {
        if let b = find(m, name, env) {
            guard b.rest == nil else { throw SchemeError.syntax("set!: cannot assign the rest parameter \(show(m, name))") }
            m[pair(b.cell)].car = value
            return
        }
        let s = Obj<SSymbol>(unchecked: name)
        guard m[s].bound else { throw SchemeError.unboundVariable(show(m, name)) }
        m[s].value = value
    }

    /// Bind `name` to `f[2]` in the frame's environment `f[1]` (global when null).
    func define(_ m: Mutator, _ name: Ref, _ f: Frame) {
        let env = Obj<SEnv>(unchecked: f[1])
        if env.isNull {
            let s = Obj<SSymbol>(unchecked: name)
            m[s].value = f[2]
            m[s].bound = true
            return
        }
        var vars = m[env].vars, vals = m[env].vals
        while kind(m, vars) == .pair {
            if car(m, vars) == name { m[pair(vals)].car = f[2]; return }
            vars = cdr(m, vars); vals = cdr(m, vals)
        }
        let v = m.allocate(pairT)                    // name is a symbol (rooted)
        m[v].car = name
        m[v].cdr = m[Obj<SEnv>(unchecked: f[1])].vars
        m[Obj<SEnv>(unchecked: f[1])].vars = v.ref
        let c = m.allocate(pairT)                    // v is reachable from the environment now
        m[c].car = f[2]
        m[c].cdr = m[Obj<SEnv>(unchecked: f[1])].vals
        m[Obj<SEnv>(unchecked: f[1])].vals = c.ref
    }

    // MARK: primitives

    func int(_ m: Mutator, _ x: Ref, _ p: Primitive) throws -> Int {
        guard kind(m, x) == .num else { throw SchemeError.wrongType(procedure: p.name, expected: "a number", got: show(m, x)) }
        return m[Obj<SNum>(unchecked: x)].value
    }

    func pairArg(_ m: Mutator, _ x: Ref, _ p: Primitive) throws -> Obj<SPair> {
        guard kind(m, x) == .pair else { throw SchemeError.wrongType(procedure: p.name, expected: "a pair", got: show(m, x)) }
        return pair(x)
    }

    /// Apply the primitive in `f[2]` to the argument list in `f[3]`.
    func applyPrimitive(_ m: Mutator, _ f: Frame) throws -> Ref {
        let p = Primitive(rawValue: m[Obj<SPrimitive>(unchecked: f[2])].code)!
        var args: [Ref] = []                          // reachable from f[3]
        var a = f[3]
        while !a.isNull { args.append(car(m, a)); a = cdr(m, a) }
        if let n = p.arity, n != args.count {
            throw SchemeError.wrongArity(procedure: p.name, expected: "\(n)", got: args.count)
        }
        func overflow() -> SchemeError { .user("\(p.name): integer overflow") }
        switch p {
        case .add, .mul:
            var acc = p == .add ? 0 : 1
            for x in args {
                let (r, o) = p == .add ? acc.addingReportingOverflow(try int(m, x, p)) : acc.multipliedReportingOverflow(by: try int(m, x, p))
                if o { throw overflow() }
                acc = r
            }
            return makeNum(m, acc)
        case .sub:
            guard let first = args.first else { throw SchemeError.wrongArity(procedure: "-", expected: "at least 1", got: 0) }
            var acc = try int(m, first, p)
            if args.count == 1 { return makeNum(m, -acc) }
            for x in args.dropFirst() {
                let (r, o) = acc.subtractingReportingOverflow(try int(m, x, p))
                if o { throw overflow() }
                acc = r
            }
            return makeNum(m, acc)
        case .quotient, .remainder:
            let a = try int(m, args[0], p), b = try int(m, args[1], p)
            if b == 0 { throw SchemeError.divisionByZero }
            return makeNum(m, p == .quotient ? a / b : a % b)
        case .numEq, .lt, .gt, .le, .ge:
            guard args.count >= 1 else { throw SchemeError.wrongArity(procedure: p.name, expected: "at least 1", got: 0) }
            let xs = try args.map { try int(m, $0, p) }
            for i in 1..<max(xs.count, 1) {
                let ok: Bool
                switch p {
                case .numEq: ok = xs[i - 1] == xs[i]
                case .lt: ok = xs[i - 1] < xs[i]
                case .gt: ok = xs[i - 1] > xs[i]
                case .le: ok = xs[i - 1] <= xs[i]
                default: ok = xs[i - 1] >= xs[i]
                }
                if !ok { return bool(false) }
            }
            return bool(true)
        case .cons:
            let c = m.allocate(pairT)                 // the arguments stay reachable from f[3]
            m[c].car = car(m, f[3])
            m[c].cdr = car(m, cdr(m, f[3]))
            return c.ref
        case .car: return m[try pairArg(m, args[0], p)].car
        case .cdr: return m[try pairArg(m, args[0], p)].cdr
        case .setCar: m[try pairArg(m, args[0], p)].car = args[1]; return unspecified
        case .setCdr: m[try pairArg(m, args[0], p)].cdr = args[1]; return unspecified
        case .list: return f[3]
        case .isNull: return bool(args[0].isNull)
        case .isPair: return bool(kind(m, args[0]) == .pair)
        case .isNumber: return bool(kind(m, args[0]) == .num)
        case .isSymbol: return bool(kind(m, args[0]) == .symbol)
        case .isProcedure: return bool([.closure, .primitive].contains(kind(m, args[0])))
        case .eq:
            if kind(m, args[0]) == .num && kind(m, args[1]) == .num { return bool(try int(m, args[0], p) == int(m, args[1], p)) }
            return bool(args[0] == args[1])
        case .not: return bool(args[0] == falseG.value)
        case .display:
            output(kind(m, args[0]) == .string ? text(m, args[0]) : show(m, args[0]))
            return unspecified
        case .newline:
            output("\n")
            return unspecified
        case .error:
            throw SchemeError.user(args.map { kind(m, $0) == .string ? text(m, $0) : show(m, $0) }.joined(separator: " "))
        }
    }
}
