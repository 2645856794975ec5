// growth: operation latency while the heap grows (Go's side of `tricolor bench growth`).
//
// A message ring whose heap grows from empty to about -mib MiB while every operation
// is timed. One operation allocates a 32-byte header (payload pointer, spare pointer,
// sequence number) and a pointer-free payload of 64..1024 bytes and stores it into the
// next slot of a ring of mib MiB / 600 bytes slots. The first pass fills the ring (the
// heap grows); the second replaces every message (steady state). Reported per phase:
// p50, p99, p99.99, the worst operation and how many took over 1 ms, in the same
// format as Tricolor's.
//
// Build and run: GO111MODULE=off go build -o growth . && ./growth [-mib 400]
package main

import (
	"flag"
	"fmt"
	"runtime"
	"sort"
	"time"
)

type Message struct {
	payload *[]byte
	spare   *Message
	seq     int
	_       int
}

func main() {
	mib := flag.Int("mib", 400, "MiB the ring grows to")
	flag.Parse()
	slots := (*mib << 20) / 600
	ring := make([]*Message, slots)
	times := make([]int64, slots)
	rng := uint64(0x2545F4914F6CDD1D)
	for pass := 0; pass < 2; pass++ {
		t0 := time.Now()
		for i := 0; i < slots; i++ {
			rng ^= rng << 13
			rng ^= rng >> 7
			rng ^= rng << 17
			start := time.Now()
			msg := &Message{seq: i}
			payload := make([]byte, 64+int(rng%961))
			payload[0] = byte(i)
			msg.payload = &payload
			ring[i] = msg
			times[i] = int64(time.Since(start))
		}
		secs := time.Since(t0)
		sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
		q := func(f float64) int64 {
			k := int(f * float64(len(times)))
			if k >= len(times) {
				k = len(times) - 1
			}
			return times[k]
		}
		over := 0
		for _, t := range times {
			if t > 1_000_000 {
				over++
			}
		}
		us := func(ns int64) string { return fmt.Sprintf("%.2f", float64(ns)/1000) }
		name := "grow"
		if pass == 1 {
			name = "steady"
		}
		fmt.Printf("growth phase=%s ops=%d p50_us=%s p99_us=%s p9999_us=%s max_us=%s over_1ms=%d ms=%d\n",
			name, slots, us(q(0.5)), us(q(0.99)), us(q(0.9999)), us(times[len(times)-1]), over, secs.Milliseconds())
	}
	for i := 0; i < slots; i += 1 + slots/1000 {
		if ring[i].seq != i {
			panic("message damaged")
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("# go growth mib=%d slots=%d heap_sys_mib=%d numgc=%d\n", *mib, slots, ms.HeapSys>>20, ms.NumGC)
}
