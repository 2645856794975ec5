// Benchmarks Game "binary-trees", Go, goroutine-per-depth version
// (same structure as the Benchmarks Game Go #2 program).
//
// Parallelism comes only from goroutines, so it obeys GOMAXPROCS:
//
//	GOMAXPROCS=1 ./go-binarytrees 21   -> one core
//	GOMAXPROCS=2 ./go-binarytrees 21   -> both cores
//
// stdout is byte-for-byte the Benchmarks Game reference output.
// Build: GO111MODULE=off go build -o out/go-binarytrees go/binarytrees/main.go
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
)

type Node struct {
	left, right *Node
}

func bottomUpTree(depth int) *Node {
	if depth <= 0 {
		return &Node{}
	}
	return &Node{bottomUpTree(depth - 1), bottomUpTree(depth - 1)}
}

// check counts the nodes: 1 + check(left) + check(right).
func (n *Node) check() int {
	if n.left == nil {
		return 1
	}
	return 1 + n.left.check() + n.right.check()
}

const minDepth = 4

func main() {
	n := 0
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: binarytrees N")
			os.Exit(2)
		}
		n = v
	}
	maxDepth := n
	if minDepth+2 > n {
		maxDepth = minDepth + 2
	}

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()

	{
		stretchDepth := maxDepth + 1
		check := bottomUpTree(stretchDepth).check()
		fmt.Fprintf(out, "stretch tree of depth %d\t check: %d\n", stretchDepth, check)
	}

	longLived := bottomUpTree(maxDepth)

	// One goroutine per depth; results are printed in depth order.
	nResults := (maxDepth-minDepth)/2 + 1
	results := make([]string, nResults)
	var wg sync.WaitGroup
	for d := minDepth; d <= maxDepth; d += 2 {
		wg.Add(1)
		go func(depth int) {
			defer wg.Done()
			iterations := 1 << uint(maxDepth-depth+minDepth)
			check := 0
			for i := 0; i < iterations; i++ {
				check += bottomUpTree(depth).check()
			}
			results[(depth-minDepth)/2] =
				fmt.Sprintf("%d\t trees of depth %d\t check: %d\n", iterations, depth, check)
		}(d)
	}
	wg.Wait()
	for _, s := range results {
		out.WriteString(s)
	}

	fmt.Fprintf(out, "long lived tree of depth %d\t check: %d\n", maxDepth, longLived.check())
}
