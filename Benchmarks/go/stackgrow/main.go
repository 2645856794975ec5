// Go's side of `tricolor bench stack`: a goroutine recursing `depth` levels, each level
// with a frame holding 8 words of pointers (the same shape as Tricolor's frames of 8
// root slots), starting from a fresh 2 KiB goroutine stack that grows by copying, then
// again on the grown stack. Reported per 8-byte slot of the frames' locals.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
)

var sink *int

//go:noinline
func recurse(d int) int {
	var f [8]*int
	f[0] = sink
	if d == 0 {
		return 0
	}
	r := recurse(d-1) + len(f)
	if f[0] != sink {
		panic("frame changed")
	}
	return r
}

func main() {
	depth, runs := 16384, 11
	if len(os.Args) > 1 {
		depth, _ = strconv.Atoi(os.Args[1])
	}
	var fresh, grown []float64
	slots := float64(depth * 8)
	for i := 0; i < runs; i++ {
		done := make(chan [2]float64)
		go func() {
			t0 := time.Now()
			a := recurse(depth)
			t1 := time.Now()
			b := recurse(depth)
			t2 := time.Now()
			if a != b {
				panic("mismatch")
			}
			done <- [2]float64{float64(t1.Sub(t0).Nanoseconds()) / slots, float64(t2.Sub(t1).Nanoseconds()) / slots}
		}()
		r := <-done
		fresh = append(fresh, r[0])
		grown = append(grown, r[1])
	}
	sort.Float64s(fresh)
	sort.Float64s(grown)
	f, g := fresh[runs/2], grown[runs/2]
	fmt.Printf("go stack depth=%d slots/frame=8 fresh_ns_per_slot=%.2f grown_ns_per_slot=%.2f growth_ns_per_slot=%.2f\n", depth, f, g, f-g)
}
