// Benchmarks Game "binary-trees", plain Swift with ARC, single-threaded.
// stdout is byte-for-byte the Benchmarks Game reference output.
// Build: swiftc -O -wmo -o out/swift-arc-binarytrees swift-arc/binarytrees.swift

final class Node {
    let left: Node?
    let right: Node?
    init(left: Node?, right: Node?) {
        self.left = left
        self.right = right
    }
}

func bottomUpTree(_ depth: Int) -> Node {
    if depth <= 0 { return Node(left: nil, right: nil) }
    return Node(left: bottomUpTree(depth - 1), right: bottomUpTree(depth - 1))
}

// check = 1 + check(left) + check(right): the node count.
func check(_ n: Node) -> Int {
    guard let l = n.left, let r = n.right else { return 1 }
    return 1 + check(l) + check(r)
}

let minDepth = 4
let args = CommandLine.arguments
let n = args.count > 1 ? (Int(args[1]) ?? 0) : 0
let maxDepth = max(minDepth + 2, n)

var output = ""
do {
    let stretchDepth = maxDepth + 1
    let c = check(bottomUpTree(stretchDepth))
    output += "stretch tree of depth \(stretchDepth)\t check: \(c)\n"
}

let longLived = bottomUpTree(maxDepth)

var depth = minDepth
while depth <= maxDepth {
    let iterations = 1 << (maxDepth - depth + minDepth)
    var sum = 0
    for _ in 0..<iterations {
        sum += check(bottomUpTree(depth))
    }
    output += "\(iterations)\t trees of depth \(depth)\t check: \(sum)\n"
    depth += 2
}

output += "long lived tree of depth \(maxDepth)\t check: \(check(longLived))\n"
print(output, terminator: "")
