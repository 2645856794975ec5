// Go's side of `tricolor bench lifecycle` (Sources/TricolorWorkloads/LifecycleBench.swift):
// the same shapes with Go 1.19's runtime.SetFinalizer and sync.Pool. Go 1.19 has no weak
// pointers (weak.Make arrived in Go 1.24), so there is no weak line.
//
//   - finalizer: n 24-byte nodes (three words, two of them pointers) held in a slice,
//     each given a finalizer that counts; the slice dropped; runtime.GC() until every
//     finalizer ran; one more runtime.GC(). ns per SetFinalizer call, and per object for
//     the whole life against the same life without finalizers.
//   - pool: two goroutines (GOMAXPROCS=2), each `ops` times Get a 4 KiB buffer, write its
//     first word, Put it back; ns per Get+Put pair.
//
// Medians of `runs` runs.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type node struct {
	left, right *node
	data        int
}

var finalized int64

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

func life(n int, withFinalizers bool) (setNs, lifeNs float64) {
	atomic.StoreInt64(&finalized, 0)
	runtime.GC()
	t0 := time.Now()
	objs := make([]*node, n)
	for i := range objs {
		objs[i] = &node{data: i}
	}
	t1 := time.Now()
	if withFinalizers {
		for _, o := range objs {
			runtime.SetFinalizer(o, func(*node) { atomic.AddInt64(&finalized, 1) })
		}
	}
	t2 := time.Now()
	objs = nil
	runtime.GC()
	if withFinalizers {
		for atomic.LoadInt64(&finalized) < int64(n) {
			time.Sleep(100 * time.Microsecond)
		}
	}
	runtime.GC()
	t3 := time.Now()
	return float64(t2.Sub(t1).Nanoseconds()) / float64(n), float64(t3.Sub(t0).Nanoseconds()) / float64(n)
}

func pool(ops int) float64 {
	p := sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}
	var wg sync.WaitGroup
	times := make([]float64, 2)
	for k := 0; k < 2; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			t0 := time.Now()
			for i := 0; i < ops; i++ {
				b := p.Get().(*[]byte)
				(*b)[0] = byte(i)
				p.Put(b)
			}
			times[k] = float64(time.Since(t0).Nanoseconds()) / float64(ops)
		}(k)
	}
	wg.Wait()
	return (times[0] + times[1]) / 2
}

func main() {
	n, ops, runs := 200000, 2000000, 5
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	runtime.GOMAXPROCS(2)
	var set, lifeF, plain, pl []float64
	for r := 0; r < runs; r++ {
		_, p := life(n, false)
		s, l := life(n, true)
		set = append(set, s)
		lifeF = append(lifeF, l)
		plain = append(plain, p)
		pl = append(pl, pool(ops))
	}
	fmt.Printf("go lifecycle objects=%d set_finalizer_ns=%.1f life_with_finalizer_ns=%.1f life_plain_ns=%.1f finalizer_extra_ns=%.1f\n",
		n, median(set), median(lifeF), median(plain), median(lifeF)-median(plain))
	fmt.Printf("go lifecycle weak: none in Go 1.19 (weak.Make is Go 1.24)\n")
	fmt.Printf("go lifecycle pool mutators=2 buffer=4096 get_put_ns=%.1f\n", median(pl))
}
