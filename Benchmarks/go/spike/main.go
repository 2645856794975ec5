// spike: RSS over time for a spike-then-idle workload (Go's side of `tricolor bench spike`).
//
// Builds about -mib MiB of live 64-byte nodes, drops them, runs runtime.GC() once,
// then sits idle for -seconds, sampling the resident set (/proc/self/statm) every
// 100 ms. Reports the peak, the RSS right after the GC, and 1, 2, 5 and N s into the
// idle period, in the same format as Tricolor's. Run with GODEBUG=scavtrace=1 to see
// the scavenger's lines.
//
// Build and run: GO111MODULE=off go build -o spike . && ./spike
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type Node struct {
	next *Node
	seq  int
	_    [6]int
}

func rss() int {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	p, _ := strconv.Atoi(f[1])
	return p * os.Getpagesize()
}

func main() {
	mib := flag.Int("mib", 512, "MiB of live nodes in the spike")
	seconds := flag.Int("seconds", 10, "idle seconds")
	flag.Parse()
	start := rss()
	peak := start
	n := (*mib << 20) / 72
	live := make([]*Node, n)
	for i := 0; i < n; i++ {
		live[i] = &Node{seq: i}
		if i%100000 == 0 && rss() > peak {
			peak = rss()
		}
	}
	if rss() > peak {
		peak = rss()
	}
	live = nil
	runtime.GC()
	afterGC := rss()
	type sample struct {
		t float64
		r int
	}
	var samples []sample
	t0 := time.Now()
	for {
		t := time.Since(t0).Seconds()
		samples = append(samples, sample{t, rss()})
		if t >= float64(*seconds) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	at := func(s float64) int {
		for _, x := range samples {
			if x.t >= s {
				return x.r
			}
		}
		return samples[len(samples)-1].r
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("spike mib=%d start_rss_mib=%d peak_rss_mib=%d after_gc_rss_mib=%d rss_1s_mib=%d rss_2s_mib=%d rss_5s_mib=%d rss_%ds_mib=%d heap_sys_mib=%d heap_released_mib=%d\n",
		*mib, start>>20, peak>>20, afterGC>>20, at(1)>>20, at(2)>>20, at(5)>>20, *seconds, samples[len(samples)-1].r>>20, ms.HeapSys>>20, ms.HeapReleased>>20)
}
