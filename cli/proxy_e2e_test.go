package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstreamHost is the name service-run is told to reach PagerDuty by. It is
// never resolved: the proxy below maps it to the test's TLS server, and Go
// only proxies names that are not loopback.
const upstreamHost = "pagerduty.courier.localhost"

// testCA makes a CA and a leaf certificate for host signed by it, and
// writes the CA's PEM to a file.
func testCA(t testing.TB, host string) (tls.Certificate, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "courier test inspecting proxy CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, caFile
}

// connectProxy is an HTTP CONNECT proxy on loopback that tunnels every
// CONNECT, whatever host it names, to target, and records what was asked.
type connectProxy struct {
	srv    *httptest.Server
	target string
	mu     sync.Mutex
	asked  []string
	wg     sync.WaitGroup
}

func newConnectProxy(t testing.TB, target string) *connectProxy {
	p := &connectProxy{target: target}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.asked = append(p.asked, r.Method+" "+r.Host)
	p.mu.Unlock()
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = up.Close()
		return
	}
	_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(up, buf)
		_ = up.Close()
	}()
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(conn, up)
		_ = conn.Close()
	}()
}

func (p *connectProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.asked...)
}

// TestE2EUpstreamThroughProxyWithPrivateCA: service-run reaches a
// PagerDuty-compatible HTTPS endpoint through HTTPS_PROXY (CONNECT) and
// trusts it through events.ca_file, for alerts and change events alike.
func TestE2EUpstreamThroughProxyWithPrivateCA(t *testing.T) {
	root := e2e(t)
	initRoot(t, root)
	cert, caFile := testCA(t, upstreamHost)

	var mu sync.Mutex
	var got []string
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Host+" "+r.URL.Path+" "+string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"success","message":"Event processed"}`)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	up.StartTLS()
	t.Cleanup(up.Close)
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	proxy := newConnectProxy(t, up.Listener.Addr().String())

	editConfig(t, root, map[string]any{"events.ca_file": caFile})
	var env []string
	for _, kv := range childEnv() {
		if name, _, _ := strings.Cut(kv, "="); strings.EqualFold(name, "HTTPS_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HTTPS_PROXY="+proxy.srv.URL)
	svc := spawnServiceRunEnv(t, root, env, "--listen", "127.0.0.1:0", "--events-url", "https://"+upstreamHost+":"+port+"/v2/enqueue")
	svc.waitReady()
	info, err := readServiceJSON(root)
	if err != nil {
		t.Fatal(err)
	}
	key := routingKeys(t, 1)[0]
	base := "http://" + loopback(info.Listen)
	trigger := `{"routing_key":"` + key + `","event_action":"trigger","dedup_key":"p1","payload":{"summary":"via proxy","source":"s","severity":"info"}}`
	change := `{"routing_key":"` + key + `","payload":{"summary":"deployed via proxy"}}`
	for path, body := range map[string]string{"/v2/enqueue": trigger, "/v2/change/enqueue": change} {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream got %d of 2 events through the proxy; proxy saw %q", n, proxy.requests())
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	host := upstreamHost + ":" + port
	want := map[string]bool{host + " /v2/enqueue " + trigger: true, host + " /v2/change/enqueue " + change: true}
	for _, g := range got {
		if !want[g] {
			t.Errorf("upstream got %q", g)
		}
	}
	for _, a := range proxy.requests() {
		if a != "CONNECT "+host {
			t.Errorf("proxy was asked %q, want only CONNECT %s", a, host)
		}
	}
}
