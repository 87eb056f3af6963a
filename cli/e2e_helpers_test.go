package cli_test

// Helpers of the end-to-end tests (e2e_test.go): they run the real courier
// binary as subprocesses, each under its own --root, against an upstream
// that the test controls. Everything talks to 127.0.0.1 only.
//
// No assertion here is about time: deadlines only bound a broken test.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"
)

// Deadlines that only a broken test reaches (2 noisy cores, -race).
const (
	startDeadline   = 60 * time.Second  // service-run up and ready
	exitDeadline    = 30 * time.Second  // a process ends after a signal
	deliverDeadline = 120 * time.Second // everything accepted reaches upstream
	cliDeadline     = 60 * time.Second  // one CLI command
)

// courierBin is the binary under test: $COURIER_BIN (make test), or one
// built by TestMain.
var courierBin string

func TestMain(m *testing.M) {
	flag.Parse()
	var tmp string
	courierBin = os.Getenv("COURIER_BIN")
	if courierBin == "" && !testing.Short() {
		var err error
		if tmp, err = os.MkdirTemp("", "courier-e2e-bin-"); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		courierBin = filepath.Join(tmp, "courier")
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", courierBin, ".")
		cmd.Dir = filepath.Dir(filepath.Dir(self)) // the module root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: go build of courier failed:", err)
			_ = os.RemoveAll(tmp)
			os.Exit(1)
		}
	}
	cleanup := func(int) {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
	}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		// Benchmarks (bench_service_test.go) keep keep-alive connections of
		// shared clients open; the leak check is for tests.
		code := m.Run()
		cleanup(code)
		os.Exit(code)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(cleanup))
}

// e2e skips in -short mode (make test-short runs unit tests only) and
// returns a fresh root.
func e2e(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: runs the courier binary")
	}
	return filepath.Join(t.TempDir(), "root")
}

// childEnv is the environment of every courier process: the test's own,
// without COURIER_* variables that would override the flags given here, and
// with a proxy that refuses everything. Go never proxies loopback, so the
// tests' own servers are reached directly, while a request meant for
// anywhere else (PagerDuty, after a regression) fails instead of leaving
// the machine.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY":
			continue
		}
		if !strings.HasPrefix(kv, "COURIER_") {
			env = append(env, kv)
		}
	}
	const nowhere = "http://127.0.0.1:9" // discard port: nothing listens
	return append(env, "HTTP_PROXY="+nowhere, "HTTPS_PROXY="+nowhere, "http_proxy="+nowhere, "https_proxy="+nowhere)
}

// cliResult is what one run of the binary did.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCourier runs `courier --root root args...` to completion.
func runCourier(t testing.TB, root string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, courierBin, append([]string{"--root", root, "--log-format", "json"}, args...)...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("courier %s did not finish within %s", strings.Join(args, " "), cliDeadline)
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("courier %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// initRoot runs `courier init` under root, then turns off per-key pacing:
// these tests push hundreds of events through one key in seconds, which the
// default pace (PagerDuty's ~120/min) would stretch to minutes. Pacing is
// tested in events/ and measured by BenchmarkPacedDrain, which sets its own.
func initRoot(t testing.TB, root string) {
	t.Helper()
	if r := runCourier(t, root, "init"); r.code != 0 {
		t.Fatalf("courier init: %s", r)
	}
	editConfig(t, root, map[string]any{"events.rate_per_key": 0})
}

// editConfig changes config.yaml under root, keeping every other key and
// its comments: set maps a dotted key to its new value, and a nil value
// deletes the key.
func editConfig(t testing.TB, root string, set map[string]any) {
	t.Helper()
	path := filepath.Join(root, "config.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for key, value := range set {
		parts := strings.Split(key, ".")
		m := doc.Content[0]
		for _, p := range parts[:len(parts)-1] {
			m = mapValue(m, p)
			if m == nil {
				t.Fatalf("config.yaml has no %s", key)
			}
		}
		last := parts[len(parts)-1]
		i := slices.IndexFunc(m.Content, func(n *yaml.Node) bool { return n.Value == last })
		if value == nil {
			if i >= 0 && i%2 == 0 {
				m.Content = slices.Delete(m.Content, i, i+2)
			}
			continue
		}
		var v yaml.Node
		if err := v.Encode(value); err != nil {
			t.Fatal(err)
		}
		if i >= 0 && i%2 == 0 {
			m.Content[i+1] = &v
		} else {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: last}, &v)
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// readConfigValue returns a top-level scalar of config.yaml.
func readConfigValue(t testing.TB, root, key string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[key].(string)
	return s
}

// serviceRun is one service-run process.
type serviceRun struct {
	t       testing.TB
	root    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	base    string        // http://127.0.0.1:PORT once ready
	token   string        // sent to /readyz when the service needs one
}

var serviceRunSeq atomic.Int64

// spawnServiceRun starts `courier service-run` under root with args and does
// not wait for it; startServiceRun does.
func spawnServiceRun(t testing.TB, root string, args ...string) *serviceRun {
	t.Helper()
	return spawnServiceRunEnv(t, root, childEnv(), args...)
}

// spawnServiceRunEnv is spawnServiceRun with its own environment.
func spawnServiceRunEnv(t testing.TB, root string, env []string, args ...string) *serviceRun {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), fmt.Sprintf("service-run-%d-*.log", serviceRunSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(courierBin, append([]string{"--root", root, "--log-format", "json", "service-run"}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf // files: no copying goroutines
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serviceRun{t: t, root: root, cmd: cmd, logPath: logf.Name(), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		if !s.exited() {
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("output of service-run pid %d (last 40 lines):\n%s", cmd.Process.Pid, tailLines(s.output(), 40))
		}
	})
	return s
}

// startServiceRun starts service-run on 127.0.0.1:0 delivering to up, and
// waits until it is ready.
func startServiceRun(t testing.TB, root string, up *fakeUpstream, extra ...string) *serviceRun {
	t.Helper()
	s := spawnServiceRun(t, root, append([]string{"--listen", "127.0.0.1:0", "--events-url", up.url()}, extra...)...)
	s.waitReady()
	return s
}

func (s *serviceRun) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *serviceRun) output() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *serviceRun) pid() int { return s.cmd.Process.Pid }

// waitReady finds the address in run/service.json (the one this process
// wrote) and polls GET /readyz until it answers 200.
func (s *serviceRun) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(startDeadline)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	for {
		if s.exited() {
			s.t.Fatalf("service-run exited (code %d) before it was ready:\n%s", s.cmd.ProcessState.ExitCode(), tailLines(s.output(), 40))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("service-run was not ready within %s:\n%s", startDeadline, tailLines(s.output(), 40))
		}
		if s.base == "" {
			if ri, err := readServiceJSON(s.root); err == nil && ri.PID == s.pid() {
				s.base = "http://" + loopback(ri.Listen)
			}
		}
		if s.base != "" {
			req, _ := http.NewRequest(http.MethodGet, s.base+"/readyz", nil)
			if s.token != "" {
				req.Header.Set("Authorization", "Token "+s.token)
			}
			if resp, err := hc.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type serviceJSON struct {
	PID    int    `json:"pid"`
	Listen string `json:"listen"`
}

func readServiceJSON(root string) (serviceJSON, error) {
	var ri serviceJSON
	b, err := os.ReadFile(filepath.Join(root, "run", "service.json"))
	if err != nil {
		return ri, err
	}
	return ri, json.Unmarshal(b, &ri)
}

// loopback turns a listen address into one on 127.0.0.1: the tests send
// nothing anywhere else, even to a service bound to every interface.
func loopback(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// kill9 kills the process with SIGKILL and waits until it is gone.
func (s *serviceRun) kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill -9 service-run: %v", err)
	}
	s.wait()
}

// terminate sends SIGTERM and returns the exit code.
func (s *serviceRun) terminate() int {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM service-run: %v", err)
	}
	return s.wait()
}

// wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it).
func (s *serviceRun) wait() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(exitDeadline):
		s.t.Fatalf("service-run (pid %d) did not exit within %s:\n%s", s.pid(), exitDeadline, tailLines(s.output(), 40))
	}
	return s.cmd.ProcessState.ExitCode()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// routingKeys returns n distinct 32-character PagerDuty routing keys. Each
// starts with "k<i>" so that a redacted key (4 characters) stays readable.
func routingKeys(t testing.TB, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		keys[i] = (fmt.Sprintf("k%dx", i) + hex.EncodeToString(b))[:32]
	}
	return keys
}

// pdEvent is what the tests read of an event that reached the upstream
// (v2 and v1 fields).
type pdEvent struct {
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     struct {
		Summary       string         `json:"summary"`
		Source        string         `json:"source"`
		Severity      string         `json:"severity"`
		CustomDetails map[string]any `json:"custom_details"`
	} `json:"payload"`
	ServiceKey  string         `json:"service_key"`
	EventType   string         `json:"event_type"`
	Description string         `json:"description"`
	Details     map[string]any `json:"details"`
}

// clientSeq reads the client id and sequence number the tests put in
// custom_details; ok is false for other events.
func (e pdEvent) clientSeq() (client, seq int, ok bool) {
	c, ok1 := e.Payload.CustomDetails["client"].(float64)
	s, ok2 := e.Payload.CustomDetails["seq"].(float64)
	return int(c), int(s), ok1 && ok2
}

// arrival is one request that reached the upstream.
type arrival struct {
	path string
	// epoch is the test's phase (bumped after each kill or stop) when the
	// connection that carried the request was accepted: a request of a
	// killed process whose handler runs late still counts as before the
	// kill, since a new process opens new connections.
	epoch  int
	conn   string // the sender's address, to tell processes apart
	status int    // what the upstream answered
	event  pdEvent
	body   []byte // as received
}

func (a arrival) accepted() bool { return a.status/100 == 2 }

// fakeUpstream stands in for PagerDuty's Events API: it records every request
// and answers what decide says (202 when decide is nil).
type fakeUpstream struct {
	srv *httptest.Server

	mu       sync.Mutex
	log      []arrival
	epoch    int
	decide   func(a arrival, n int) (int, http.Header)
	delay    time.Duration
	requests int
}

func newFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve)) // 127.0.0.1
	u.srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		u.mu.Lock()
		defer u.mu.Unlock()
		return context.WithValue(ctx, epochKey{}, u.epoch)
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

type epochKey struct{}

func (u *fakeUpstream) url() string { return u.srv.URL + "/v2/enqueue" }

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the sender went away mid-body: nothing arrived
	}
	epoch, _ := r.Context().Value(epochKey{}).(int)
	a := arrival{path: r.URL.Path, epoch: epoch, conn: r.RemoteAddr, body: body}
	if err := json.Unmarshal(body, &a.event); err != nil {
		http.Error(w, `{"status":"invalid event","message":"not JSON"}`, http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	status, hdr := http.StatusAccepted, http.Header(nil)
	if u.decide != nil {
		status, hdr = u.decide(a, u.requests)
	}
	u.requests++
	a.status = status
	u.log = append(u.log, a)
	delay := u.delay
	u.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	switch {
	case status/100 == 2:
		fmt.Fprintf(w, `{"status":"success","message":"Event processed","dedup_key":%q}`, a.event.DedupKey)
	case status == http.StatusBadRequest:
		fmt.Fprint(w, `{"status":"invalid event","message":"Event object is invalid","errors":["refused by the test upstream"]}`)
	default:
		fmt.Fprintf(w, `{"status":"error","message":"test upstream answers %d"}`, status)
	}
}

// setDecide changes how the upstream answers from now on.
func (u *fakeUpstream) setDecide(f func(a arrival, n int) (int, http.Header)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.decide = f
}

func (u *fakeUpstream) setDelay(d time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.delay = d
}

// nextEpoch marks the arrivals on connections accepted from now on as a
// new phase (after a kill or a stop).
func (u *fakeUpstream) nextEpoch() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.epoch++
}

func (u *fakeUpstream) arrivals() []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.log)
}

// waitFor polls the upstream's arrivals until cond holds.
func (u *fakeUpstream) waitFor(t testing.TB, what string, cond func([]arrival) bool) []arrival {
	t.Helper()
	deadline := time.Now().Add(deliverDeadline)
	for {
		a := u.arrivals()
		if cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream: %s did not happen within %s (%d arrivals)", what, deliverDeadline, len(a))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// poster sends events to the local API of whichever service-run is
// current; the test moves it to a restarted service with setBase.
type poster struct {
	hc    *http.Client
	base  atomic.Pointer[string]
	token string
}

func newPoster(t testing.TB, base string) *poster {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	p := &poster{hc: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
	p.setBase(base)
	t.Cleanup(tr.CloseIdleConnections)
	return p
}

func (p *poster) setBase(base string) { p.base.Store(&base) }

// post sends one body to path and returns the status and headers; err is
// a transport error (connection refused or reset: not accepted).
func (p *poster) post(path string, body []byte, header http.Header) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, *p.base.Load()+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Token "+p.token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

func (p *poster) get(path string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, *p.base.Load()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Token "+p.token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// triggerEvent is a PagerDuty v2 trigger carrying the client id and
// sequence number that the delivery checks read back.
func triggerEvent(routingKey string, client, seq int) []byte {
	b, _ := json.Marshal(map[string]any{
		"routing_key":  routingKey,
		"event_action": "trigger",
		"dedup_key":    fmt.Sprintf("e2e-c%d-%d", client, seq),
		"payload": map[string]any{
			"summary":        fmt.Sprintf("client %d event %d", client, seq),
			"source":         "e2e-test",
			"severity":       "error",
			"custom_details": map[string]any{"client": client, "seq": seq},
		},
	})
	return b
}

// eventClient posts the events 0, 1, 2, ... of one sender to one routing key,
// each only after the previous one was answered 202, as a PagerDuty client
// keeps its order. A 202 is the only acceptance: anything else (connection
// refused or reset, 429, 503) is retried.
type eventClient struct {
	id  int
	key string

	// Written by the client's goroutine, read after it ended.
	accepted  int            // events 0..accepted-1 were answered 202
	attempted int            // events 0..attempted-1 were sent at least once
	retried   map[int]bool   // events that had an attempt without a 202
	firstTry  []time.Time    // when each event was first sent
	ackAt     []time.Time    // when each event was answered 202
	codes     map[int]int    // answers other than 202, by status (0: transport error)
	after429  []http.Header  // headers of the 429 answers
	bodies429 []string       // bodies of the 429 answers
	acks      *atomic.Int64  // shared count of 202s across clients
	stop      *atomic.Bool   // stop between events
	abandon   *atomic.Bool   // also stop while retrying an event
	honor     bool           // wait Retry-After after a 429/503
	n         int            // events to send
	p         *poster        // where to send
	onAnswer  func(code int) // optional hook, called after each answer
}

func (c *eventClient) run() {
	c.retried = map[int]bool{}
	c.codes = map[int]int{}
	for seq := 0; seq < c.n && !c.stop.Load(); seq++ {
		body := triggerEvent(c.key, c.id, seq)
		c.attempted = seq + 1
		c.firstTry = append(c.firstTry, time.Now())
		for {
			code, hdr, respBody, err := c.p.post("/v2/enqueue", body, nil)
			if c.onAnswer != nil {
				c.onAnswer(code)
			}
			if err == nil && code == http.StatusAccepted {
				c.accepted = seq + 1
				c.ackAt = append(c.ackAt, time.Now())
				c.acks.Add(1)
				break
			}
			c.retried[seq] = true
			c.codes[code]++
			wait := 10 * time.Millisecond
			if code == http.StatusTooManyRequests {
				c.after429 = append(c.after429, hdr)
				c.bodies429 = append(c.bodies429, string(respBody))
			}
			if c.honor && hdr != nil {
				if s, err := strconv.Atoi(hdr.Get("Retry-After")); err == nil && s > 0 {
					wait = time.Duration(s) * time.Second
				}
			}
			if c.abandon != nil && c.abandon.Load() {
				return
			}
			time.Sleep(wait)
		}
	}
}

// runEventClients starts one client per (key, id) and returns a function that
// waits for them all.
func runEventClients(clients []*eventClient) (wait func()) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run()
		}()
	}
	return wg.Wait
}

// deliveredByClient returns, per client id, the arrivals of its events that the
// upstream accepted, in arrival order.
func deliveredByClient(arr []arrival) map[int][]arrival {
	out := map[int][]arrival{}
	for _, a := range arr {
		if !a.accepted() {
			continue
		}
		if c, _, ok := a.event.clientSeq(); ok {
			out[c] = append(out[c], a)
		}
	}
	return out
}

// allDelivered reports whether every event answered 202 has reached the
// upstream (and been accepted there) at least once.
func allDelivered(clients []*eventClient) func([]arrival) bool {
	return func(arr []arrival) bool {
		by := deliveredByClient(arr)
		for _, c := range clients {
			seen := map[int]bool{}
			for _, a := range by[c.id] {
				if _, s, _ := a.event.clientSeq(); s < c.accepted {
					seen[s] = true
				}
			}
			if len(seen) < c.accepted {
				return false
			}
		}
		return true
	}
}

// checkDelivery checks what reached the upstream against what the clients
// were told:
//   - every event answered 202 arrived, and nothing arrived that was never
//     sent, on the right routing key;
//   - per client, the first arrivals of its events are 0, 1, 2, ... in
//     order: the key's FIFO kept the client's order;
//   - per routing key, an event answered 202 before another event was first
//     sent arrived (first) before it, whichever clients sent them;
//   - an event arrives more than once only when allowDup says why: a retry
//     by its client (it may have been stored twice), or an arrival in an
//     earlier epoch (delivered, but the process stopped before it recorded
//     that), and then once per epoch. Without allowDup, no event arrives
//     twice.
//
// waitDelivered waits until every event answered 202 to clients has
// arrived, then checks the arrivals with checkDelivery. It fails early, with
// the checker's findings, when the queue of the service-run under root says
// nothing is pending while accepted events are still missing: they are lost.
func waitDelivered(t testing.TB, up *fakeUpstream, root string, clients []*eventClient, allowDup bool) []arrival {
	t.Helper()
	done := allDelivered(clients)
	deadline := time.Now().Add(deliverDeadline)
	nextStatus := time.Now().Add(time.Second)
	for {
		arr := up.arrivals()
		if done(arr) {
			checkDelivery(t, arr, clients, allowDup)
			return arr
		}
		if time.Now().After(deadline) {
			checkDelivery(t, arr, clients, allowDup)
			t.Fatalf("accepted events did not all arrive within %s (%d arrivals)", deliverDeadline, len(arr))
		}
		if time.Now().After(nextStatus) {
			// An arrival is recorded before the upstream answers, and the
			// queue counts it as delivered only after the answer.
			if st := cliStatus(t, root); st.Pending == 0 && st.Delivering == 0 {
				if arr := up.arrivals(); !done(arr) {
					checkDelivery(t, arr, clients, allowDup)
					t.Fatalf("the queue has nothing pending, yet accepted events never arrived (status %+v)", st)
				}
			}
			nextStatus = time.Now().Add(time.Second)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func checkDelivery(t testing.TB, arr []arrival, clients []*eventClient, allowDup bool) {
	t.Helper()
	problems := deliveryProblems(arr, clients, allowDup)
	for i, p := range problems {
		if i == 10 {
			t.Errorf("... and %d more delivery problems", len(problems)-10)
			break
		}
		t.Error(p)
	}
}

func deliveryProblems(arr []arrival, clients []*eventClient, allowDup bool) []string {
	by := deliveredByClient(arr)
	index := map[[2]int]int{} // (client, seq) -> index of its first arrival
	for i, a := range arr {
		if !a.accepted() {
			continue
		}
		if c, s, ok := a.event.clientSeq(); ok {
			if _, seen := index[[2]int{c, s}]; !seen {
				index[[2]int{c, s}] = i
			}
		}
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, c := range clients {
		next := 0
		epochs := map[int][]int{}
		conns := map[int][]string{}
		for _, a := range by[c.id] {
			_, s, _ := a.event.clientSeq()
			if a.event.RoutingKey != c.key {
				fail("client %d: event %d arrived with routing key %.4s…, want %.4s…", c.id, s, a.event.RoutingKey, c.key)
			}
			switch {
			case s == next:
				next++
			case s > next:
				fail("client %d: event %d arrived before event %d (out of order or lost)", c.id, s, next)
				next = s + 1
			case !allowDup:
				fail("client %d: event %d arrived twice", c.id, s)
			case c.retried[s]:
				// sent twice by the client: may be stored twice
			case !slices.Contains(epochs[s], a.epoch) && slices.ContainsFunc(epochs[s], func(e int) bool { return e < a.epoch }):
				// delivered before a kill or stop, not yet recorded as such:
				// sent again once by the next process
			default:
				fail("client %d: event %d arrived again in epoch %d from %s (earlier arrivals: %v) without a reason", c.id, s, a.epoch, a.conn, conns[s])
			}
			epochs[s] = append(epochs[s], a.epoch)
			conns[s] = append(conns[s], fmt.Sprintf("epoch %d from %s", a.epoch, a.conn))
		}
		if next < c.accepted {
			fail("client %d: events %d..%d were answered 202 but never arrived", c.id, next, c.accepted-1)
		}
		if next > c.attempted {
			fail("client %d: event %d arrived but was never sent", c.id, next-1)
		}
	}
	// A restarted process starts from its durable head: per routing key,
	// what it sends again (acknowledged upstream before the stop, not yet
	// recorded as such) comes before anything new. A re-send after a new
	// event means a cursor went backwards.
	retried := map[int]map[int]bool{}
	for _, c := range clients {
		retried[c.id] = c.retried
	}
	seen := map[[2]int]bool{}
	fresh := map[string]int{} // key -> last epoch in which a new event arrived
	for _, a := range arr {
		c, s, ok := a.event.clientSeq()
		if !ok || !a.accepted() {
			continue
		}
		key := a.event.RoutingKey
		id := [2]int{c, s}
		switch {
		case !seen[id]:
			seen[id] = true
			fresh[key] = a.epoch
		case allowDup && !retried[c][s] && a.epoch > 0 && fresh[key] == a.epoch:
			fail("key %.4s…: client %d event %d was sent again in epoch %d after new events of its key", key, c, s, a.epoch)
		}
	}
	// Order per routing key across clients.
	byKey := map[string][]*eventClient{}
	for _, c := range clients {
		byKey[c.key] = append(byKey[c.key], c)
	}
	for key, cs := range byKey {
		for _, x := range cs {
			for xs := 0; xs < x.accepted; xs++ {
				for _, y := range cs {
					for ys := 0; ys < y.attempted; ys++ {
						if !x.ackAt[xs].Before(y.firstTry[ys]) {
							continue
						}
						ix, okx := index[[2]int{x.id, xs}]
						iy, oky := index[[2]int{y.id, ys}]
						if okx && oky && iy < ix {
							fail("key %.4s…: client %d event %d was accepted before client %d sent event %d, but arrived after it",
								key, x.id, xs, y.id, ys)
						}
					}
				}
			}
		}
	}
	return problems
}

// cliQueueStatus is what the tests read of `courier status --json`.
type cliQueueStatus struct {
	Keys []struct {
		Key        string `json:"key"`
		Pending    int64  `json:"pending"`
		Delivering int64  `json:"delivering"`
		Failed     int64  `json:"failed"`
		LastError  string `json:"last_error"`
	} `json:"keys"`
	Pending    int64 `json:"pending"`
	Delivering int64 `json:"delivering"`
	Failed     int64 `json:"failed"`
}

// cliStatus runs `courier status --json`.
func cliStatus(t testing.TB, root string) cliQueueStatus {
	t.Helper()
	r := runCourier(t, root, "status", "--json", "--show-keys")
	if r.code != 0 {
		t.Fatalf("courier status --json: %s", r)
	}
	var s cliQueueStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("courier status --json printed something that is not its JSON: %v\n%s", err, r.stdout)
	}
	return s
}

// waitCLIStatus runs `courier status --json` until cond holds.
func waitCLIStatus(t testing.TB, root, what string, cond func(cliQueueStatus) bool) cliQueueStatus {
	t.Helper()
	deadline := time.Now().Add(deliverDeadline)
	for {
		s := cliStatus(t, root)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("courier status: %s did not happen within %s; last: %+v", what, deliverDeadline, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
