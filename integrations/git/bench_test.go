//go:build unix

package git

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"courier/sessions"
)

// BenchmarkGitExport exports a generated repository (20,000 commits, or the
// sizes in COURIER_GIT_BENCH_COMMITS, comma-separated) through the real
// queue and compares it with `git log --numstat` over the same repo.
// Metrics: x-gitlog is export time / git log time (the goal is <= 1.5),
// x-gitlog-cpu the same for CPU time (this process and its git children
// against git log's), steadier than wall time on a busy machine;
// cold-s is the first export, which also clones the mirror; peak-heap-MB
// and peak-sys-MB are the process's peak heap in use and memory from the
// OS while exporting (sampled at each delivered batch), which stay flat
// from 20k to 100k commits when the parser streams. Set
// COURIER_GIT_BENCH_KEEP=1 to keep generated repos in $TMPDIR between runs.
//
//	COURIER_GIT_BENCH_COMMITS=20000,100000 go test -run '^$' -bench GitExport -benchtime 3x ./integrations/git/
func BenchmarkGitExport(b *testing.B) {
	sizes := []int{20000}
	if v := os.Getenv("COURIER_GIT_BENCH_COMMITS"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 10 {
				b.Fatalf("COURIER_GIT_BENCH_COMMITS: %q", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("commits=%d", n), func(b *testing.B) { benchExport(b, n) })
	}
}

func benchExport(b *testing.B, n int) {
	src := generatedRepo(b, n)
	r := newRig(b)
	r.coll.SetDiscard(true)
	var (
		peakMu           sync.Mutex
		peakHeap, peakOS uint64
		ms               runtime.MemStats
	)
	r.coll.SetAfter(func(int) {
		peakMu.Lock()
		defer peakMu.Unlock()
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
		peakOS = max(peakOS, ms.Sys)
	})
	g := r.newGit(b, src)
	export := func() (wall, cpu time.Duration) {
		run := sessions.NewRun(sessions.RunOptions{IntegrationID: testID, Store: r.store, Reprocess: true})
		cpu0 := cpuTime()
		start := time.Now()
		if err := g.Export(context.Background(), run.Root()); err != nil {
			b.Fatal(err)
		}
		wall, cpu = time.Since(start), cpuTime()-cpu0
		if got := run.Stats().Records["commit"]; got != int64(n) {
			b.Fatalf("%d commits exported, want %d", got, n)
		}
		sent := 0
		for _, v := range run.Stats().Records {
			sent += int(v)
		}
		r.waitDelivered(b, r.seen+sent)
		r.seen += sent
		return wall, cpu
	}
	gitLog := func() (wall, cpu time.Duration) {
		cmd := exec.Command("git", "--git-dir="+src, "log", "--numstat")
		cmd.Stdout = io.Discard
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	cold, _ := export() // clones the mirror
	runtime.GC()
	peakMu.Lock()
	peakHeap, peakOS = 0, 0
	peakMu.Unlock()
	b.ResetTimer()
	var exp, base, expCPU, baseCPU time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w, c := gitLog()
		base, baseCPU = base+w, baseCPU+c
		b.StartTimer()
		w, c = export()
		exp, expCPU = exp+w, expCPU+c
	}
	b.StopTimer()
	b.ReportMetric(float64(exp)/float64(base), "x-gitlog")
	b.ReportMetric(float64(expCPU)/float64(baseCPU), "x-gitlog-cpu")
	b.ReportMetric(exp.Seconds()/float64(b.N), "export-s")
	b.ReportMetric(base.Seconds()/float64(b.N), "gitlog-s")
	b.ReportMetric(cold.Seconds(), "cold-s")
	b.ReportMetric(float64(n)*float64(b.N)/exp.Seconds(), "commits/s")
	peakMu.Lock()
	defer peakMu.Unlock()
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(peakOS)/(1<<20), "peak-sys-MB")
}

// cpuTime is the CPU this process and its reaped children (git) used.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}
