// Hans Boehm's GCBench, Go port (follows the Java/C originals: GCBench.java, GCBench.c).
//
//	kStretchTreeDepth   = 18  (about 16 MB of nodes in the original)
//	kLongLivedTreeDepth = 16  (about 4 MB, kept live for the whole run)
//	kArraySize          = 500000 float64 (about 4 MB, kept live)
//	kMinTreeDepth..kMaxTreeDepth = 4..16 step 2; at each depth
//	NumIters(d) = 2 * TreeSize(kStretchTreeDepth) / TreeSize(d) trees are built
//	top-down (Populate) and then bottom-up (MakeTree) and dropped immediately.
//
// Output: the classic GCBench.c lines ("Completed in N msec" is the summary),
// then one machine-readable line starting with '#' (key=value pairs) on stdout.
// Build: GO111MODULE=off go build -o out/go-gcbench go/gcbench/main.go
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"time"
)

type Node struct {
	left, right *Node
	i, j        int32 // Java's int fields, never used but part of the object size
}

const (
	kStretchTreeDepth   = 18
	kLongLivedTreeDepth = 16
	kArraySize          = 500000
	kMinTreeDepth       = 4
	kMaxTreeDepth       = 16
)

var out = bufio.NewWriter(os.Stdout)

// TreeSize is the number of nodes in a complete tree of the given depth.
func TreeSize(i int) int { return (1 << uint(i+1)) - 1 }

// NumIters is the number of trees of depth i to build.
func NumIters(i int) int { return 2 * TreeSize(kStretchTreeDepth) / TreeSize(i) }

// Populate builds a tree top-down.
func Populate(iDepth int, thisNode *Node) {
	if iDepth <= 0 {
		return
	}
	iDepth--
	thisNode.left = &Node{}
	thisNode.right = &Node{}
	Populate(iDepth, thisNode.left)
	Populate(iDepth, thisNode.right)
}

// MakeTree builds a tree bottom-up.
func MakeTree(iDepth int) *Node {
	if iDepth <= 0 {
		return &Node{}
	}
	return &Node{left: MakeTree(iDepth - 1), right: MakeTree(iDepth - 1)}
}

var sink *Node // keeps the compiler honest about the temporary trees

func TimeConstruction(depth int) {
	iNumIters := NumIters(depth)
	fmt.Fprintf(out, "Creating %d trees of depth %d\n", iNumIters, depth)

	tStart := time.Now()
	for i := 0; i < iNumIters; i++ {
		tempTree := &Node{}
		Populate(depth, tempTree)
		sink = tempTree
		sink = nil
	}
	fmt.Fprintf(out, "\tTop down construction took %d msec\n", time.Since(tStart).Milliseconds())

	tStart = time.Now()
	for i := 0; i < iNumIters; i++ {
		sink = MakeTree(depth)
		sink = nil
	}
	fmt.Fprintf(out, "\tBottom up construction took %d msec\n", time.Since(tStart).Milliseconds())
	out.Flush()
}

func main() {
	defer out.Flush()
	var nodeSize = 2*8 + 2*4 // two pointers + two int32 on 64-bit
	fmt.Fprintf(out, "Garbage Collector Test\n")
	fmt.Fprintf(out, " Live storage will peak at %d bytes.\n\n",
		2*nodeSize*TreeSize(kLongLivedTreeDepth)+8*kArraySize)
	fmt.Fprintf(out, " Stretching memory with a binary tree of depth %d\n", kStretchTreeDepth)
	out.Flush()

	tStart := time.Now()

	// Stretch the memory space quickly.
	sink = MakeTree(kStretchTreeDepth)
	sink = nil

	// Create a long-lived object.
	fmt.Fprintf(out, " Creating a long-lived binary tree of depth %d\n", kLongLivedTreeDepth)
	longLivedTree := &Node{}
	Populate(kLongLivedTreeDepth, longLivedTree)

	// Create a long-lived array, filling half of it.
	fmt.Fprintf(out, " Creating a long-lived array of %d doubles\n", kArraySize)
	array := make([]float64, kArraySize)
	for i := 0; i < kArraySize/2; i++ {
		array[i] = 1.0 / float64(i)
	}
	out.Flush()

	for d := kMinTreeDepth; d <= kMaxTreeDepth; d += 2 {
		TimeConstruction(d)
	}

	if longLivedTree == nil || array[1000] != 1.0/1000 {
		fmt.Fprintf(out, "Failed\n")
	}
	// Fake reference to the long-lived data so it stays live until here.
	runtime.KeepAlive(longLivedTree)
	runtime.KeepAlive(array)

	elapsed := time.Since(tStart)
	fmt.Fprintf(out, "Completed in %d msec\n", elapsed.Milliseconds())

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(out, "# impl=go wall_s=%.3f numgc=%d pause_total_ms=%.3f heap_sys_mb=%.1f gomaxprocs=%d\n",
		elapsed.Seconds(), ms.NumGC, float64(ms.PauseTotalNs)/1e6,
		float64(ms.HeapSys)/(1<<20), runtime.GOMAXPROCS(0))
}
