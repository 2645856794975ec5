// The same Scheme on plain Swift classes (ARC), for comparison with `HeapScheme`: the
// same reader, evaluator structure, special forms, primitives and error messages.
// Values are an enum whose reference cases are classes; numbers are inline.
//
// ARC frees an object when its last strong reference goes, so it never frees a cycle:
// every closure defined inside a procedure body (its environment binds the closure,
// the closure holds the environment) leaks, with everything the environment reaches.
// That is the point of the comparison (BENCHMARKS.md, "Scheme").

/// A Scheme value in the ARC interpreter.
enum AValue: Equatable {
    case null, num(Int), pair(APair), symbol(ASymbol), closure(AClosure), primitive(Primitive)
    case bool(Bool), unspecified, string(String)

    static func == (a: AValue, b: AValue) -> Bool {
        switch (a, b) {
        case (.null, .null), (.unspecified, .unspecified): return true
        case (.num(let x), .num(let y)): return x == y
        case (.pair(let x), .pair(let y)): return x === y
        case (.symbol(let x), .symbol(let y)): return x === y
        case (.closure(let x), .closure(let y)): return x === y
        case (.primitive(let x), .primitive(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        default: return false
        }
    }
}

final class APair {
    var car: AValue, cdr: AValue
    init(_ car: AValue, _ cdr: AValue) { self.car = car; self.cdr = cdr }
}

final class ASymbol {
    let name: String
    var value: AValue? = nil
    init(_ name: String) { self.name = name }
}

final class AClosure {
    let params: AValue, body: AValue, env: AEnv?, name: ASymbol?
    init(params: AValue, body: AValue, env: AEnv?, name: ASymbol?) {
        self.params = params; self.body = body; self.env = env; self.name = name
    }
}

final class AEnv {
    var vars: AValue, vals: AValue
    let parent: AEnv?
    init(vars: AValue, vals: AValue, parent: AEnv?) { self.vars = vars; self.vals = vals; self.parent = parent }
}

/// The Scheme interpreter on ARC classes.
public final class ARCScheme {
    /// Where `display` and `newline` write.
    public var output: (String) -> Void
    private var symbols: [String: ASymbol] = [:]
    private let sQuote: ASymbol, sIf: ASymbol, sDefine: ASymbol, sSet: ASymbol, sLambda: ASymbol
    private let sBegin: ASymbol, sLet: ASymbol, sCond: ASymbol, sElse: ASymbol, sAnd: ASymbol, sOr: ASymbol

    /// A new interpreter.
    public init(output: @escaping (String) -> Void = { print($0, terminator: "") }) {
        self.output = output
        func sym(_ n: String) -> ASymbol { ASymbol(n) }
        sQuote = sym("quote"); sIf = sym("if"); sDefine = sym("define"); sSet = sym("set!"); sLambda = sym("lambda")
        sBegin = sym("begin"); sLet = sym("let"); sCond = sym("cond"); sElse = sym("else"); sAnd = sym("and"); sOr = sym("or")
        for s in [sQuote, sIf, sDefine, sSet, sLambda, sBegin, sLet, sCond, sElse, sAnd, sOr] { symbols[s.name] = s }
        for p in Primitive.allCases { intern(p.name).value = .primitive(p) }
    }

    /// Read and evaluate every form of `source`; returns each form's value as printed.
    public func run(_ source: String) throws -> [String] {
        try Reader.readAll(source).map { show(try eval(build($0), nil)) }
    }

    func intern(_ name: String) -> ASymbol {
        if let s = symbols[name] { return s }
        let s = ASymbol(name)
        symbols[name] = s
        return s
    }

    func build(_ d: Datum) -> AValue {
        switch d {
        case .int(let n): return .num(n)
        case .string(let s): return .string(s)
        case .bool(let b): return .bool(b)
        case .symbol(let s): return .symbol(intern(s))
        case .list(let items, let tail):
            var v = tail.map(build) ?? .null
            for item in items.reversed() { v = .pair(APair(build(item), v)) }
            return v
        }
    }

    func show(_ x: AValue, depth: Int = 0) -> String {
        if depth > 100 { return "..." }
        switch x {
        case .null: return "()"
        case .num(let n): return String(n)
        case .symbol(let s): return s.name
        case .bool(let b): return b ? "#t" : "#f"
        case .unspecified: return "#<unspecified>"
        case .primitive(let p): return "#<primitive \(p.name)>"
        case .closure(let c): return c.name.map { "#<procedure \($0.name)>" } ?? "#<procedure>"
        case .string(let s): return "\"" + s + "\""
        case .pair:
            var parts: [String] = []
            var p = x
            while case .pair(let c) = p, parts.count < 10_000 {
                parts.append(show(c.car, depth: depth + 1))
                p = c.cdr
            }
            return "(" + parts.joined(separator: " ") + (p == .null ? "" : " . " + show(p, depth: depth + 1)) + ")"
        }
    }

    func car(_ x: AValue) -> AValue { if case .pair(let p) = x { return p.car }; return .null }
    func cdr(_ x: AValue) -> AValue { if case .pair(let p) = x { return p.cdr }; return .null }
    func isPair(_ x: AValue) -> Bool { if case .pair = x { return true }; return false }
    func isFalse(_ x: AValue) -> Bool { x == .bool(false) }

    func rest(_ x: AValue, _ n: Int, _ form: String) throws -> AValue {
        let args = cdr(x)
        var p = args
        for _ in 0..<n {
            guard isPair(p) else { throw SchemeError.syntax("\(form): expected at least \(n) operands in \(show(x))") }
            p = cdr(p)
        }
        return args
    }

    func eval(_ x0: AValue, _ env0: AEnv?) throws -> AValue {
        var x = x0, env = env0
        while true {
            switch x {
            case .symbol(let s): return try lookup(s, env)
            case .pair: break
            case .null: throw SchemeError.syntax("cannot evaluate ()")
            default: return x
            }
            let op = car(x)
            if case .symbol(let s) = op, let form = specialForm(s) {
                switch form {
                case 0: // quote
                    return car(try rest(x, 1, "quote"))
                case 1: // if
                    let args = try rest(x, 2, "if")
                    let test = try eval(car(args), env)
                    let branches = cdr(args)
                    if !isFalse(test) { x = car(branches) }
                    else if cdr(branches) != .null { x = car(cdr(branches)) }
                    else { return .unspecified }
                    continue
                case 2: // define
                    let target = car(try rest(x, 2, "define"))
                    let value: AValue, nameV: AValue
                    if isPair(target) {
                        nameV = car(target)
                        guard case .symbol(let n) = nameV else { throw SchemeError.syntax("define: not a symbol: \(show(nameV))") }
                        value = .closure(AClosure(params: cdr(target), body: cdr(cdr(x)), env: env, name: n))
                    } else {
                        nameV = target
                        value = try eval(car(cdr(cdr(x))), env)
                    }
                    guard case .symbol(let name) = nameV else { throw SchemeError.syntax("define: not a symbol: \(show(nameV))") }
                    define(name, value, env)
                    return nameV
                case 3: // set!
                    let args = try rest(x, 2, "set!")
                    guard case .symbol(let name) = car(args) else { throw SchemeError.syntax("set!: not a symbol: \(show(car(args)))") }
                    try assign(name, try eval(car(cdr(args)), env), env)
                    return .unspecified
                case 4: // lambda
                    _ = try rest(x, 2, "lambda")
                    return .closure(AClosure(params: car(cdr(x)), body: cdr(cdr(x)), env: env, name: nil))
                case 5: // begin
                    guard let last = try evalAllButLast(cdr(x), env) else { return .unspecified }
                    x = last
                    continue
                case 6: // let
                    let bindings = car(try rest(x, 2, "let"))
                    let names = try collect(bindings, env, .letNames)
                    let vals = try collect(bindings, env, .letValues)
                    env = AEnv(vars: names, vals: vals, parent: env)
                    guard let last = try evalAllButLast(cdr(cdr(x)), env) else { return .unspecified }
                    x = last
                    continue
                case 7: // cond
                    var clauses = cdr(x)
                    var chosen: AValue? = nil
                    while isPair(clauses) {
                        let clause = car(clauses)
                        guard isPair(clause) else { throw SchemeError.syntax("cond: bad clause \(show(clause))") }
                        if case .symbol(let s) = car(clause), s === sElse { chosen = cdr(clause); break }
                        let test = try eval(car(clause), env)
                        if !isFalse(test) {
                            if cdr(clause) == .null { return test }
                            chosen = cdr(clause)
                            break
                        }
                        clauses = cdr(clauses)
                    }
                    guard let body = chosen, let last = try evalAllButLast(body, env) else { return .unspecified }
                    x = last
                    continue
                default: // and (8), or (9)
                    let isAnd = form == 8
                    var p = cdr(x)
                    if p == .null { return .bool(isAnd) }
                    while cdr(p) != .null {
                        let v = try eval(car(p), env)
                        if isFalse(v) == isAnd { return v }
                        p = cdr(p)
                    }
                    x = car(p)
                    continue
                }
            }
            let fn = try eval(op, env)
            let args = try collect(cdr(x), env, .arguments)
            switch fn {
            case .primitive(let p):
                return try applyPrimitive(p, args)
            case .closure(let c):
                try checkArity(c, args)
                env = AEnv(vars: c.params, vals: args, parent: c.env)
                guard let last = try evalAllButLast(c.body, env) else { return .unspecified }
                x = last
            default:
                throw SchemeError.notAProcedure(show(fn))
            }
        }
    }

    func specialForm(_ s: ASymbol) -> Int? {
        if s === sQuote { return 0 }; if s === sIf { return 1 }; if s === sDefine { return 2 }
        if s === sSet { return 3 }; if s === sLambda { return 4 }; if s === sBegin { return 5 }
        if s === sLet { return 6 }; if s === sCond { return 7 }; if s === sAnd { return 8 }
        if s === sOr { return 9 }
        return nil
    }

    func evalAllButLast(_ body: AValue, _ env: AEnv?) throws -> AValue? {
        var p = body
        if p == .null { return nil }
        while cdr(p) != .null {
            _ = try eval(car(p), env)
            p = cdr(p)
        }
        return car(p)
    }

    func collect(_ list: AValue, _ env: AEnv?, _ mode: HeapScheme.CollectMode) throws -> AValue {
        var items: [AValue] = []
        var p = list
        while p != .null {
            guard isPair(p) else { throw SchemeError.syntax("improper list: \(show(list))") }
            let item = car(p)
            switch mode {
            case .arguments:
                items.append(try eval(item, env))
            case .letNames, .letValues:
                guard isPair(item), case .symbol = car(item), isPair(cdr(item)) else {
                    throw SchemeError.syntax("let: bad binding \(show(item))")
                }
                items.append(mode == .letNames ? car(item) : try eval(car(cdr(item)), env))
            }
            p = cdr(p)
        }
        var v = AValue.null
        for item in items.reversed() { v = .pair(APair(item, v)) }
        return v
    }

    func checkArity(_ c: AClosure, _ args: AValue) throws {
        var n = 0, p = c.params
        while isPair(p) { n += 1; p = cdr(p) }
        let variadic = p != .null
        var k = 0, a = args
        while a != .null { k += 1; a = cdr(a) }
        if k != n && !(variadic && k > n) {
            throw SchemeError.wrongArity(procedure: c.name.map { $0.name } ?? "#<procedure>",
                                         expected: variadic ? "at least \(n)" : "\(n)", got: k)
        }
    }

    func find(_ name: ASymbol, _ env: AEnv?) -> (cell: APair?, rest: AValue?)? {
        var e = env
        while let f = e {
            var vars = f.vars, vals = f.vals
            while case .pair(let v) = vars {
                if case .symbol(let s) = v.car, s === name {
                    if case .pair(let c) = vals { return (c, nil) }
                    return nil
                }
                vars = v.cdr
                vals = cdr(vals)
            }
            if case .symbol(let s) = vars, s === name { return (nil, vals) }
            e = f.parent
        }
        return nil
    }

    func lookup(_ name: ASymbol, _ env: AEnv?) throws -> AValue {
        if let b = find(name, env) { return b.rest ?? b.cell!.car }
        guard let v = name.value else { throw SchemeError.unboundVariable(name.name) }
        return v
    }

    func assign(_ name: ASymbol, _ value: AValue, _ env: AEnv?) throws {
        if let b = find(name, env) {
            guard let cell = b.cell else { throw SchemeError.syntax("set!: cannot assign the rest parameter \(name.name)") }
            cell.car = value
            return
        }
        guard name.value != nil else { throw SchemeError.unboundVariable(name.name) }
        name.value = value
    }

    func define(_ name: ASymbol, _ value: AValue, _ env: AEnv?) {
        guard let e = env else { name.value = value; return }
        var vars = e.vars, vals = e.vals
        while case .pair(let v) = vars {
            if case .symbol(let s) = v.car, s === name, case .pair(let c) = vals { c.car = value; return }
            vars = v.cdr; vals = cdr(vals)
        }
        e.vars = .pair(APair(.symbol(name), e.vars))
        e.vals = .pair(APair(value, e.vals))
    }

    func int(_ x: AValue, _ p: Primitive) throws -> Int {
        guard case .num(let n) = x else { throw SchemeError.wrongType(procedure: p.name, expected: "a number", got: show(x)) }
        return n
    }

    func pairArg(_ x: AValue, _ p: Primitive) throws -> APair {
        guard case .pair(let c) = x else { throw SchemeError.wrongType(procedure: p.name, expected: "a pair", got: show(x)) }
        return c
    }

    func applyPrimitive(_ p: Primitive, _ argList: AValue) throws -> AValue {
        var args: [AValue] = []
        var a = argList
        while case .pair(let c) = a { args.append(c.car); a = c.cdr }
        if let n = p.arity, n != args.count {
            throw SchemeError.wrongArity(procedure: p.name, expected: "\(n)", got: args.count)
        }
        func overflow() -> SchemeError { .user("\(p.name): integer overflow") }
        switch p {
        case .add, .mul:
            var acc = p == .add ? 0 : 1
            for x in args {
                let (r, o) = p == .add ? acc.addingReportingOverflow(try int(x, p)) : acc.multipliedReportingOverflow(by: try int(x, p))
                if o { throw overflow() }
                acc = r
            }
            return .num(acc)
        case .sub:
            guard let first = args.first else { throw SchemeError.wrongArity(procedure: "-", expected: "at least 1", got: 0) }
            var acc = try int(first, p)
            if args.count == 1 { return .num(-acc) }
            for x in args.dropFirst() {
                let (r, o) = acc.subtractingReportingOverflow(try int(x, p))
                if o { throw overflow() }
                acc = r
            }
            return .num(acc)
        case .quotient, .remainder:
            let a = try int(args[0], p), b = try int(args[1], p)
            if b == 0 { throw SchemeError.divisionByZero }
            return .num(p == .quotient ? a / b : a % b)
        case .numEq, .lt, .gt, .le, .ge:
            guard args.count >= 1 else { throw SchemeError.wrongArity(procedure: p.name, expected: "at least 1", got: 0) }
            let xs = try args.map { try int($0, p) }
            for i in 1..<max(xs.count, 1) {
                let ok: Bool
                switch p {
                case .numEq: ok = xs[i - 1] == xs[i]
                case .lt: ok = xs[i - 1] < xs[i]
                case .gt: ok = xs[i - 1] > xs[i]
                case .le: ok = xs[i - 1] <= xs[i]
                default: ok = xs[i - 1] >= xs[i]
                }
                if !ok { return .bool(false) }
            }
            return .bool(true)
        case .cons: return .pair(APair(args[0], args[1]))
        case .car: return try pairArg(args[0], p).car
        case .cdr: return try pairArg(args[0], p).cdr
        case .setCar: try pairArg(args[0], p).car = args[1]; return .unspecified
        case .setCdr: try pairArg(args[0], p).cdr = args[1]; return .unspecified
        case .list: return argList
        case .isNull: return .bool(args[0] == .null)
        case .isPair: return .bool(isPair(args[0]))
        case .isNumber: if case .num = args[0] { return .bool(true) }; return .bool(false)
        case .isSymbol: if case .symbol = args[0] { return .bool(true) }; return .bool(false)
        case .isProcedure:
            switch args[0] { case .closure, .primitive: return .bool(true); default: return .bool(false) }
        case .eq: return .bool(args[0] == args[1])
        case .not: return .bool(isFalse(args[0]))
        case .display:
            if case .string(let s) = args[0] { output(s) } else { output(show(args[0])) }
            return .unspecified
        case .newline:
            output("\n")
            return .unspecified
        case .error:
            throw SchemeError.user(args.map { if case .string(let s) = $0 { return s }; return show($0) }.joined(separator: " "))
        }
    }
}
