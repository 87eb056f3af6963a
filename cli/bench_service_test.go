package cli_test

// Benchmarks of the built binary's service-run (docs/benchmarks.md). They run
// only with -bench; `make bench` runs them at full size with COURIER_BIN set.
// Nothing here asserts a timing: the machine is noisy, so results are read
// as ratios between sub-benchmarks of one run.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"

	"courier/actors"
	"courier/config"
	"courier/events"
	"courier/queue"
)

const (
	benchClients = 16
	// benchDetail sizes an event so that its stored form (the envelope with
	// received_at and the generated dedup_key) is about 1 KiB.
	benchDetail = 630
)

// benchEnvInt reads a positive integer from the environment, or def.
func benchEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchBinary returns COURIER_BIN, or builds the binary into a temporary
// folder (there is no TestMain here so as not to collide with tests of this
// package that may define one; the build cache makes this quick).
func benchBinary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("COURIER_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "courier")
	out, err := exec.Command("go", "build", "-o", bin, "courier").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// benchRoutingKey is a valid 32-character PagerDuty routing key.
func benchRoutingKey(i int) string { return fmt.Sprintf("benchroutingkey%017d", i) }

// benchEvents returns n distinct v2 trigger bodies for routingKey, with
// random details so that compression does not flatter the store.
func benchEvents(n int, routingKey string, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	raw := make([]byte, benchDetail/2)
	out := make([][]byte, n)
	for i := range out {
		for j := 0; j+8 <= len(raw); j += 8 {
			binary.LittleEndian.PutUint64(raw[j:], r.Uint64())
		}
		out[i] = fmt.Appendf(nil, `{"routing_key":%q,"event_action":"trigger","payload":{"summary":"disk usage above 90%% on host-%d","source":"host-%d.example.net","severity":"warning","component":"disk","group":"storage","custom_details":{"mount":"/var","used_pct":91.5,"blob":%q}}}`,
			routingKey, i%100, i%100, hex.EncodeToString(raw))
	}
	return out
}

// benchStored returns what the queue stores for an event body, as the local
// API would store it.
func benchStored(b *testing.B, body []byte) []byte {
	b.Helper()
	acc, problems := events.ParseV2(body)
	if problems != nil {
		b.Fatalf("bench event is invalid: %v", problems)
	}
	p, err := events.EncodeStored(acc.Stored(time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchService is one service-run of the built binary.
type benchService struct {
	cmd    *exec.Cmd
	root   string
	addr   string
	stderr *os.File
	ready  time.Duration // from process start to the first 200 of /readyz
	exited chan error
}

// benchChildEnv is this process's environment without COURIER_* variables,
// which would change what the service does.
func benchChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COURIER_") {
			env = append(env, kv)
		}
	}
	return env
}

func benchInit(b *testing.B, bin, root string) {
	b.Helper()
	cmd := exec.Command(bin, "--root", root, "init")
	cmd.Env = benchChildEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("courier init: %v\n%s", err, out)
	}
}

// startService starts service-run on root and waits until /readyz answers 200.
func benchStartService(b *testing.B, bin, root, upstream string) *benchService {
	b.Helper()
	_ = os.Remove(filepath.Join(root, "run", "service.json"))
	errf, err := os.Create(filepath.Join(b.TempDir(), "service-run.stderr"))
	if err != nil {
		b.Fatal(err)
	}
	s := &benchService{root: root, stderr: errf, exited: make(chan error, 1)}
	s.cmd = exec.Command(bin, "--root", root, "--log-format", "json", "service-run",
		"--listen", "127.0.0.1:0", "--events-url", upstream)
	s.cmd.Stdout, s.cmd.Stderr = errf, errf
	s.cmd.Env = benchChildEnv()
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	deadline := start.Add(2 * time.Minute)
	for {
		select {
		case err := <-s.exited:
			s.exited <- err
			b.Fatalf("service-run exited before it was ready: %v\n%s", err, s.tail())
		default:
		}
		if time.Now().After(deadline) {
			s.stop(b)
			b.Fatalf("service-run not ready after 2 minutes\n%s", s.tail())
		}
		if s.addr == "" {
			if raw, err := os.ReadFile(filepath.Join(root, "run", "service.json")); err == nil {
				var ri struct {
					Listen string `json:"listen"`
				}
				if json.Unmarshal(raw, &ri) == nil && ri.Listen != "" {
					s.addr = ri.Listen
				}
			}
		}
		if s.addr != "" {
			if resp, err := client.Get("http://" + s.addr + "/readyz"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					s.ready = time.Since(start)
					return s
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *benchService) url(path string) string { return "http://" + s.addr + path }

// stop sends SIGTERM and waits for a graceful exit; it returns how long the
// shutdown took.
func (s *benchService) stop(b *testing.B) time.Duration {
	b.Helper()
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			b.Errorf("service-run exited with %v\n%s", err, s.tail())
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		b.Errorf("service-run did not stop within 30s of SIGTERM\n%s", s.tail())
	}
	_ = s.stderr.Close()
	return time.Since(start)
}

// tail returns the end of the service's output, for failure messages.
func (s *benchService) tail() string {
	raw, _ := os.ReadFile(s.stderr.Name())
	if len(raw) > 4000 {
		raw = raw[len(raw)-4000:]
	}
	return string(raw)
}

// memory reads the peak (VmHWM) and current (VmRSS) resident set in KiB.
func (s *benchService) memory(b *testing.B) (hwm, rss int64) {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		switch name {
		case "VmHWM":
			hwm = kib
		case "VmRSS":
			rss = kib
		}
	}
	return hwm, rss
}

// benchUpstream is an httptest PagerDuty that answers 202 after delay.
func benchUpstream(b *testing.B, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	b.Helper()
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if delay > 0 {
			time.Sleep(delay)
		}
		got.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"success","message":"Event processed"}`)
	}))
	b.Cleanup(srv.Close)
	return srv, &got
}

// benchNewClient is a keep-alive client for benchClients concurrent
// requests; its idle connections are closed when b ends (goleak checks).
func benchNewClient(b *testing.B) *http.Client {
	c := &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConns: 2 * benchClients, MaxIdleConnsPerHost: 2 * benchClients},
	}
	b.Cleanup(c.CloseIdleConnections)
	return c
}

// load runs work(i) for i in [0, n) on clients goroutines and returns each
// call's latency and the wall time of the whole.
func benchLoad(n, clients int, work func(i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := work(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return nil, 0, *err
	}
	return lat, time.Since(start), nil
}

// post sends body to url and wants 202.
func benchPost(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, answer)
	}
	return nil
}

func benchPct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func benchMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reportLatency reports events/s, p50 and p99 and returns events/s.
func benchReport(b *testing.B, lat []time.Duration, wall time.Duration) float64 {
	rate := float64(len(lat)) / wall.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(benchMs(benchPct(lat, 50)), "p50-ms")
	b.ReportMetric(benchMs(benchPct(lat, 99)), "p99-ms")
	b.ReportMetric(0, "ns/op") // one op is the whole run; events/s is the figure
	return rate
}

type benchPebbleLogger struct{}

func (benchPebbleLogger) Infof(string, ...any)  {}
func (benchPebbleLogger) Errorf(string, ...any) {}
func (benchPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// cpuTime is the CPU time (user + system) the process has used so far.
func (s *benchService) cpuTime(b *testing.B) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is
	// the first, utime the 12th, stime the 13th; both in USER_HZ (100/s).
	_, rest, _ := strings.Cut(string(raw), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		b.Fatalf("cannot parse /proc/%d/stat", s.cmd.Process.Pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkHTTPEnqueue posts COURIER_BENCH_EVENTS events (2,000 by
// default; 30,000 under `make bench`) of about 1 KiB stored to POST
// /v2/enqueue of a real service-run, from 16 keep-alive clients, all to one
// routing key. Sub-benchmarks, in this order, the set repeated
// COURIER_BENCH_ROUNDS times (1 by default, 3 under `make bench`):
//
//	courier       the upstream (httptest) answers 202 at once, so the
//	              service delivers while it accepts, as it would in use;
//	courier-idle  the upstream answers after 1 s, so delivery is all but
//	              idle: the cost of acceptance alone;
//	raw           16 goroutines each committing one stored event per
//	              pebble.Sync batch: the durable ceiling without HTTP;
//	null          the same 16 clients against an in-process handler that
//	              reads the body and answers 202: the ceiling of HTTP
//	              itself on this machine.
//
// Besides events/s and latency, the courier runs report the service's CPU
// time per accepted event (svc-cpu-us/event), which noise on a shared
// machine disturbs much less than throughput. Goal: courier/raw >= 1.
func BenchmarkHTTPEnqueue(b *testing.B) {
	n := benchEnvInt(b, "COURIER_BENCH_EVENTS", 2000)
	rk := benchRoutingKey(1)
	bodies := benchEvents(1024, rk, 1)
	stored := make([][]byte, len(bodies))
	for i, body := range bodies {
		stored[i] = benchStored(b, body)
	}
	b.Logf("event body %d bytes, stored %d bytes; %d events per run, %d clients", len(bodies[0]), len(stored[0]), n, benchClients)
	bin := benchBinary(b)
	rates := map[string][]float64{}

	courier := func(name string, upstreamDelay time.Duration) {
		b.Run(name, func(b *testing.B) {
			root := b.TempDir()
			benchInit(b, bin, root)
			up, delivered := benchUpstream(b, upstreamDelay)
			svc := benchStartService(b, bin, root, up.URL+"/v2/enqueue")
			defer svc.stop(b)
			client := benchNewClient(b)
			url := svc.url("/v2/enqueue")
			// Warm up connections and the service.
			if _, _, err := benchLoad(4*benchClients, benchClients, func(i int) error { return benchPost(client, url, bodies[i%len(bodies)]) }); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				cpu0, got0 := svc.cpuTime(b), delivered.Load()
				lat, wall, err := benchLoad(n, benchClients, func(i int) error { return benchPost(client, url, bodies[i%len(bodies)]) })
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu := svc.cpuTime(b) - cpu0
				rates[name] = append(rates[name], benchReport(b, lat, wall))
				b.ReportMetric(float64(cpu.Microseconds())/float64(n), "svc-cpu-us/event")
				b.ReportMetric(float64(delivered.Load()-got0)/wall.Seconds(), "delivered/s")
				b.StartTimer()
			}
			b.StopTimer()
			hwm, _ := svc.memory(b)
			b.Logf("service VmHWM %d MiB", hwm>>10)
		})
	}
	raw := func() {
		b.Run("raw", func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: benchPebbleLogger{}})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = db.Close() }()
			var seq atomic.Uint64
			b.ResetTimer()
			for range b.N {
				lat, wall, err := benchLoad(n, benchClients, func(i int) error {
					bt := db.NewBatch()
					_ = bt.Set(binary.BigEndian.AppendUint64([]byte("d"), seq.Add(1)), stored[i%len(stored)], nil)
					err := bt.Commit(pebble.Sync)
					_ = bt.Close()
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				rates["raw"] = append(rates["raw"], benchReport(b, lat, wall))
				b.StartTimer()
			}
		})
	}
	null := func() {
		b.Run("null", func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{"status":"success","message":"Event processed","dedup_key":"0123456789abcdef0123456789abcdef"}`)
			}))
			defer srv.Close()
			client := benchNewClient(b)
			b.ResetTimer()
			for range b.N {
				lat, wall, err := benchLoad(n, benchClients, func(i int) error { return benchPost(client, srv.URL, bodies[i%len(bodies)]) })
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				rates["null"] = append(rates["null"], benchReport(b, lat, wall))
				b.StartTimer()
			}
		})
	}

	// Rounds interleave the four, so that each ratio compares runs made on
	// the same machine state (-count would repeat each one in a row).
	for range benchRounds(b) {
		courier("courier", 0)
		courier("courier-idle", time.Second)
		raw()
		null()
	}

	rawMed, nullMed := benchMedian(rates["raw"]), benchMedian(rates["null"])
	if len(rates["raw"]) == 0 || len(rates["null"]) == 0 {
		return
	}
	for _, name := range []string{"courier", "courier-idle"} {
		c := rates[name]
		if len(c) != len(rates["raw"]) || len(c) != len(rates["null"]) {
			continue
		}
		perRaw, perNull := make([]float64, len(c)), make([]float64, len(c))
		for i := range c {
			perRaw[i], perNull[i] = c[i]/max(rates["raw"][i], 1), c[i]/max(rates["null"][i], 1)
		}
		b.Logf("%-12s %6.0f events/s: /raw %.2f (goal >= 1), /null %.2f; per round /raw %.2f /null %.2f   [raw Pebble %.0f, null HTTP %.0f]",
			name, benchMedian(c), benchMedian(perRaw), benchMedian(perNull), perRaw, perNull, rawMed, nullMed)
	}
}

// benchRounds is COURIER_BENCH_ROUNDS, how many times interleaved
// comparisons run: 1 by default, 3 under `make bench`.
func benchRounds(b *testing.B) int { return benchEnvInt(b, "COURIER_BENCH_ROUNDS", 1) }

func benchMedian(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkRestartBacklog builds a root with COURIER_BENCH_ITEMS pending
// events (100,000 by default; 1,000,000 under `make bench`) of about 1 KiB
// stored each, spread over 4 routing keys so that they fit the default
// quotas, by opening the queue in-process with no Router. It then starts the
// real service-run on that root three times:
//
//  1. against an upstream that answers 202 after 50 ms (so nearly
//     everything stays pending), with 2,000 more events posted over HTTP;
//  2. the same again after a graceful stop, without the extra events;
//  3. against an upstream that answers at once, for 20 s: a backlog drain
//     after an outage.
//
// Reported: ready-ms and restart-ready-ms (process start to the first 200 of
// /readyz in runs 1 and 2; goal < 1000), peak-rss-MiB (the largest VmHWM of
// the three runs; goal < 150), and the drain's events/s over its first and
// last 5 s.
func BenchmarkRestartBacklog(b *testing.B) {
	items := benchEnvInt(b, "COURIER_BENCH_ITEMS", 100_000)
	const keys = 4
	bin := benchBinary(b)
	for range b.N {
		root := b.TempDir()
		benchInit(b, bin, root)
		buildBacklog(b, root, items, keys)

		client := benchNewClient(b)
		slow, slowGot := benchUpstream(b, 50*time.Millisecond)
		var peak int64
		var readies []time.Duration
		for run := range 2 {
			svc := benchStartService(b, bin, root, slow.URL+"/v2/enqueue")
			readies = append(readies, svc.ready)
			if run == 0 {
				// Some intake on top of the backlog, while delivery runs.
				extra := benchEvents(2000, benchRoutingKey(0), 99)
				if _, _, err := benchLoad(len(extra), benchClients, func(i int) error {
					return benchPost(client, svc.url("/v2/enqueue"), extra[i])
				}); err != nil {
					svc.stop(b)
					b.Fatal(err)
				}
			}
			time.Sleep(3 * time.Second)
			for _, path := range []string{"/v1/queue/status", "/metrics"} {
				if resp, err := client.Get(svc.url(path)); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}
			hwm, rss := svc.memory(b)
			peak = max(peak, hwm)
			stopped := svc.stop(b)
			b.Logf("run %d: ready in %s, VmHWM %d MiB, VmRSS %d MiB, stopped in %s; delivered upstream so far %d",
				run+1, svc.ready.Round(time.Millisecond), hwm>>10, rss>>10, stopped.Round(time.Millisecond), slowGot.Load())
		}

		// Run 3: the upstream is back; how fast does the backlog drain?
		fast, fastGot := benchUpstream(b, 0)
		svc := benchStartService(b, bin, root, fast.URL+"/v2/enqueue")
		const drain = 20 * time.Second
		perSecond := make([]int64, 0, int(drain/time.Second))
		cpu0 := svc.cpuTime(b)
		prev := fastGot.Load()
		for range int(drain / time.Second) {
			time.Sleep(time.Second)
			got := fastGot.Load()
			perSecond = append(perSecond, got-prev)
			prev = got
		}
		cpu := svc.cpuTime(b) - cpu0
		hwm, _ := svc.memory(b)
		peak = max(peak, hwm)
		svc.stop(b)
		sum := func(v []int64) (t int64) {
			for _, x := range v {
				t += x
			}
			return t
		}
		first, last := float64(sum(perSecond[:5]))/5, float64(sum(perSecond[len(perSecond)-5:]))/5
		b.Logf("run 3 (drain, upstream answers at once): delivered per second %v; %d in %s using %s of CPU; VmHWM %d MiB",
			perSecond, sum(perSecond), drain, cpu.Round(time.Millisecond), hwm>>10)

		b.ReportMetric(benchMs(readies[0]), "ready-ms")
		b.ReportMetric(benchMs(readies[1]), "restart-ready-ms")
		b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
		b.ReportMetric(first, "drain-first5s-events/s")
		b.ReportMetric(last, "drain-last5s-events/s")
		b.ReportMetric(0, "ns/op")
	}
}

// buildBacklog writes items pending events over keys routing keys into
// root's queue, in-process, as the queue package would have stored them.
func buildBacklog(b *testing.B, root string, items, keys int) {
	b.Helper()
	start := time.Now()
	stored := make([][][]byte, keys)
	for k := range keys {
		for _, body := range benchEvents(1024, benchRoutingKey(k), uint64(k)) {
			stored[k] = append(stored[k], benchStored(b, body))
		}
	}
	sys := actors.NewSystem(zerolog.Nop())
	defer sys.Shutdown()
	q, err := queue.Open(sys, queue.Options{Dir: config.Layout{Root: root}.DB(), Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := events.QueueKey(benchRoutingKey(k))
			per := items / keys
			if k == 0 {
				per += items % keys
			}
			for i := 0; i < per && failed.Load() == nil; i += 1000 {
				batch := make([][]byte, 0, 1000)
				for j := i; j < min(i+1000, per); j++ {
					batch = append(batch, stored[k][j%len(stored[k])])
				}
				// Refuse: the backlog must fit the default quotas that
				// service-run will apply.
				if err := q.Enqueue(context.Background(), key, batch, queue.Refuse); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	st, _ := q.Status(context.Background())
	if err := q.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := failed.Load(); err != nil {
		b.Fatalf("building the backlog: %v", *err)
	}
	b.Logf("backlog: %d items, %d MiB pending, %d MiB on disk, built in %s",
		st.Pending, st.PendingBytes>>20, st.DiskBytes>>20, time.Since(start).Round(time.Millisecond))
}
