// liveheap: GC pause measurement for Go with a large live heap.
//
// Builds about -live-mib MiB (default 1024) of individually allocated,
// pointer-holding 48-byte nodes once (each linked to its predecessor and to a
// random node among the previous 1024, all reachable from one big []*Node),
// runs one forced GC, then allocates short-lived garbage for -duration
// (default 10s) and reports the stop-the-world pauses of the GC cycles that
// started during that steady-state phase (cycles during the build are
// excluded). Run it as is (GOMAXPROCS = number of cores, GOGC=100).
//
// How Go records pauses (read from src/runtime/mgc.go, Go 1.19):
//   - Each cycle has two STW phases: sweep termination (gcStart, from
//     work.pauseStart to startTheWorld, ends at work.tMark) and mark
//     termination (gcMarkDone..gcMarkTermination, work.tMarkTerm..work.tEnd).
//     A third, rare one happens when gcMarkDone must restart the world.
//   - Each phase adds its duration to work.pauseNS, and gcMarkTermination stores
//     memstats.pause_ns[numgc%256] = work.pauseNS. So MemStats.PauseNs (and
//     debug.GCStats.Pause) hold ONE value per cycle: the SUM of that cycle's STW
//     pauses, in a 256-entry ring (older cycles are lost).
//   - Each individual STW phase is also recorded separately by
//     memstats.gcPauseDist.record(...), exposed as the runtime/metrics
//     histogram "/gc/pauses:seconds" (bucketed, so percentiles are bucket
//     upper bounds).
//   - GODEBUG=gctrace=1 prints per cycle "A+B+C ms clock": A = sweep
//     termination STW, B = concurrent mark, C = mark termination STW
//     (A+C == the PauseNs entry, up to the printing resolution). All three
//     sources time a pause from work.pauseStart, which is set just BEFORE
//     stopTheWorldWithSema (mgc.go:661/665 and 850/855 in 1.19), to
//     startTheWorld, so the time to bring every P to a stop is included.
//   - The rare third pause (gcMarkDone finds late work and restarts the world)
//     is added to PauseNs and is a separate sample in /gc/pauses, but gctrace
//     shows it only inside B; so /gc/pauses may count more than 2 per cycle.
//
// By default the program re-executes itself with GODEBUG=gctrace=1, parses the
// trace from the child's stderr and prints the individual-pause distribution
// too. Use -no-gctrace to run in-process only.
//
// Output (stdout), one key=value line per source, all times in microseconds:
//
//	numgc=N npauses=N pause_p50_us=.. pause_p99_us=.. pause_max_us=.. pause_total_ms=.. pause_kind=cycle_sum source=MemStats.PauseNs
//	numgc=N npauses=M pause_p50_us=.. pause_p99_us=.. pause_max_us=.. pause_kind=individual_bucketed source=runtime/metrics:/gc/pauses
//	numgc=N npauses=2N pause_p50_us=.. pause_p99_us=.. pause_max_us=.. pause_total_ms=.. pause_kind=individual source=gctrace
//
// plus per-phase lines from gctrace (cycle_sum, sweep_termination,
// mark_termination) and a leading '#' line with the run's parameters.
// Percentiles are nearest-rank over the recorded samples. With 1 GiB live and
// GOGC=100 only ~3 cycles fit in 10 s on 2 cores (one mark takes ~1.5 s), so
// p99 == max; use e.g. -duration 60s for a meatier distribution.
//
// Build: GO111MODULE=off go build -o out/go-liveheap go/liveheap/main.go
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Node: two pointers + 32 bytes payload = 48 bytes, an exact Go size class.
type Node struct {
	left, right *Node
	payload     [4]int64
}

// Garbage node for the short-lived trees: 16 bytes.
type GNode struct {
	left, right *GNode
}

var (
	liveMiB   = flag.Int("live-mib", 1024, "live heap to build, MiB (nodes + pointer slice)")
	duration  = flag.Duration("duration", 10*time.Second, "how long to allocate garbage")
	child     = flag.Bool("child", false, "internal: run the workload (set by the gctrace wrapper)")
	noGCTrace = flag.Bool("no-gctrace", false, "do not re-exec with GODEBUG=gctrace=1")
	traceOut  = flag.String("gctrace-out", "", "also write the raw gctrace lines to this file")
)

const markerPrefix = "liveheap: measure numgc_start="

func main() {
	flag.Parse()
	if !*child && !*noGCTrace {
		os.Exit(wrapper())
	}
	workload()
}

// ---------------------------------------------------------------- workload

var sinkG *GNode

func makeTree(d int) *GNode {
	if d <= 0 {
		return &GNode{}
	}
	return &GNode{makeTree(d - 1), makeTree(d - 1)}
}

func (n *GNode) count() int {
	if n.left == nil {
		return 1
	}
	return 1 + n.left.count() + n.right.count()
}

func workload() {
	const perNode = 48 + 8 // node + its slot in the pointer slice
	n := (*liveMiB << 20) / perNode

	tBuild := time.Now()
	live := make([]*Node, n)
	rng := uint64(0x9E3779B97F4A7C15)
	next := func() uint64 { // xorshift64
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return rng
	}
	for i := range live {
		nd := &Node{}
		nd.payload[0] = int64(i)
		live[i] = nd
		if i > 0 {
			// Links stay near in allocation order: marking is then bound by
			// scanning, not by cache misses. (With uniformly random links a
			// single mark of this heap took 6-9 s on the 2-core box and only
			// one cycle fit in 10 s.)
			nd.right = live[i-1]
			nd.left = live[uint64(i)-1-next()%uint64(min(i, 1024))]
		}
	}
	runtime.GC() // start the measured phase from a clean, fully marked heap
	buildS := time.Since(tBuild).Seconds()

	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	hist0 := readPauseHist()
	if *child {
		fmt.Fprintf(os.Stderr, "%s%d\n", markerPrefix, ms0.NumGC)
	}

	// Steady state: short-lived garbage, per step one binary tree of depth
	// 5..8 (63..511 16-byte nodes) and one pointer-free []byte of 1..32 KiB,
	// each stored into a 64-slot ring (so garbage dies after a short while,
	// not instantly) that overwrites a random older entry.
	var ring [64]*GNode
	var bring [64][]byte
	t0 := time.Now()
	deadline := t0.Add(*duration)
	iters, checksum := 0, 0
	for {
		for k := 0; k < 64; k++ {
			t := makeTree(5 + int(next()%4)) // 63..511 nodes of 16 B
			if t.left != nil {
				checksum++
			}
			ring[next()%64] = t
			b := make([]byte, 1024+int(next()%(31*1024))) // 1..32 KiB, pointer-free
			b[0] = byte(k)
			bring[next()%64] = b
		}
		iters += 64
		if time.Now().After(deadline) {
			break
		}
	}
	elapsed := time.Since(t0).Seconds()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	hist1 := readPauseHist()
	runtime.KeepAlive(live)
	runtime.KeepAlive(&ring)
	runtime.KeepAlive(&bring)

	// Per-cycle sums from MemStats.PauseNs for cycles numgc0+1 .. numgc1.
	ncycles := int(ms1.NumGC - ms0.NumGC)
	var cyc []float64
	for c := ms0.NumGC + 1; c <= ms1.NumGC; c++ {
		if ms1.NumGC-c >= 256 {
			continue // overwritten in the ring
		}
		cyc = append(cyc, float64(ms1.PauseNs[(c+255)%256])/1e3)
	}
	fmt.Printf("# liveheap impl=go %s gomaxprocs=%d live_nodes=%d live_mib=%d build_s=%.2f duration_s=%.2f alloc_mib=%.0f gc_cpu_fraction=%.3f heap_inuse_mib=%.0f heap_sys_mib=%.0f checksum=%d\n",
		runtime.Version(), runtime.GOMAXPROCS(0), n, *liveMiB, buildS, elapsed,
		float64(ms1.TotalAlloc-ms0.TotalAlloc)/(1<<20), ms1.GCCPUFraction,
		float64(ms1.HeapInuse)/(1<<20), float64(ms1.HeapSys)/(1<<20), checksum%1000)
	fmt.Printf("numgc=%d %s pause_kind=cycle_sum source=MemStats.PauseNs\n", ncycles, stats(cyc))

	// Individual STW pauses from the runtime/metrics histogram (difference).
	fmt.Printf("numgc=%d %s pause_kind=individual_bucketed source=runtime/metrics:/gc/pauses\n",
		ncycles, histStats(hist0, hist1))
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func stats(us []float64) string {
	if len(us) == 0 {
		return "npauses=0 pause_p50_us=NA pause_p99_us=NA pause_max_us=NA pause_total_ms=0"
	}
	s := append([]float64(nil), us...)
	sort.Float64s(s)
	total := 0.0
	for _, v := range s {
		total += v
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return fmt.Sprintf("npauses=%d pause_p50_us=%.0f pause_p99_us=%.0f pause_max_us=%.0f pause_total_ms=%.2f",
		len(s), rank(50), rank(99), s[len(s)-1], total/1e3)
}

func readPauseHist() *metrics.Float64Histogram {
	sm := []metrics.Sample{{Name: "/gc/pauses:seconds"}}
	metrics.Read(sm)
	if sm[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	h := sm[0].Value.Float64Histogram()
	return &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}
}

// histStats: nearest-rank percentiles over the histogram difference; each
// value is reported as its bucket's upper bound.
func histStats(h0, h1 *metrics.Float64Histogram) string {
	if h0 == nil || h1 == nil {
		return "npauses=NA"
	}
	var total uint64
	counts := make([]uint64, len(h1.Counts))
	for i := range counts {
		counts[i] = h1.Counts[i] - h0.Counts[i]
		total += counts[i]
	}
	if total == 0 {
		return "npauses=0"
	}
	q := func(p float64) float64 {
		want := uint64(math.Ceil(p / 100 * float64(total)))
		if want == 0 {
			want = 1
		}
		var acc uint64
		for i, c := range counts {
			acc += c
			if acc >= want {
				return h1.Buckets[i+1] * 1e6
			}
		}
		return math.Inf(1)
	}
	return fmt.Sprintf("npauses=%d pause_p50_us=%.0f pause_p99_us=%.0f pause_max_us=%.0f",
		total, q(50), q(99), q(100))
}

// ---------------------------------------------------------------- wrapper

func wrapper() int {
	args := append([]string{"-child"}, os.Args[1:]...)
	cmd := exec.Command(os.Args[0], args...)
	godebug := "gctrace=1"
	if old := os.Getenv("GODEBUG"); old != "" {
		godebug = old + "," + godebug
	}
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	cmd.Stdout = os.Stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var raw *os.File
	if *traceOut != "" {
		if raw, err = os.Create(*traceOut); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer raw.Close()
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	startGC := -1
	type cycle struct {
		n      int
		sweep  float64 // us
		markT  float64 // us
		forced bool
	}
	var cycles []cycle
	sc := bufio.NewScanner(errPipe)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if raw != nil {
			fmt.Fprintln(raw, line)
		}
		if strings.HasPrefix(line, markerPrefix) {
			startGC, _ = strconv.Atoi(strings.TrimPrefix(line, markerPrefix))
			continue
		}
		if c, ok := parseGCTrace(line); ok {
			cycles = append(cycles, cycle{c.n, c.a * 1e3, c.c * 1e3, c.forced})
			continue
		}
		fmt.Fprintln(os.Stderr, line)
	}
	if err := cmd.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if startGC < 0 {
		fmt.Fprintln(os.Stderr, "liveheap: no measurement marker from child")
		return 1
	}
	var indiv, sums, sweeps, marks []float64
	for _, c := range cycles {
		if c.n <= startGC {
			continue
		}
		indiv = append(indiv, c.sweep, c.markT)
		sums = append(sums, c.sweep+c.markT)
		sweeps = append(sweeps, c.sweep)
		marks = append(marks, c.markT)
	}
	fmt.Printf("numgc=%d %s pause_kind=individual source=gctrace\n", len(sums), stats(indiv))
	fmt.Printf("numgc=%d %s pause_kind=cycle_sum source=gctrace\n", len(sums), stats(sums))
	fmt.Printf("numgc=%d %s pause_kind=sweep_termination source=gctrace\n", len(sums), stats(sweeps))
	fmt.Printf("numgc=%d %s pause_kind=mark_termination source=gctrace\n", len(sums), stats(marks))
	return 0
}

type traceLine struct {
	n       int
	a, b, c float64 // ms: sweep-term STW, concurrent mark, mark-term STW
	forced  bool
}

// parseGCTrace parses a Go 1.19 gctrace line:
//
//	gc 12 @3.456s 4%: 0.021+150+0.040 ms clock, 0.042+0.5/300/0+0.080 ms cpu, 1500->1600->1024 MB, 2048 MB goal, 0 MB stacks, 0 MB globals, 2 P
func parseGCTrace(line string) (traceLine, bool) {
	var t traceLine
	if !strings.HasPrefix(line, "gc ") {
		return t, false
	}
	f := strings.Fields(line)
	if len(f) < 6 || f[5] != "ms" || f[6] != "clock," {
		return t, false
	}
	var err error
	if t.n, err = strconv.Atoi(f[1]); err != nil {
		return t, false
	}
	parts := strings.Split(f[4], "+")
	if len(parts) != 3 {
		return t, false
	}
	vals := make([]float64, 3)
	for i, p := range parts {
		if vals[i], err = strconv.ParseFloat(p, 64); err != nil {
			return t, false
		}
	}
	t.a, t.b, t.c = vals[0], vals[1], vals[2]
	t.forced = strings.Contains(line, "(forced)")
	return t, true
}
