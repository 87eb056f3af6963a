package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"courier/backend/devserver"
	"courier/backend/devserver/devservertest"
)

// BenchmarkExportToBackend measures an export of the synthetic integration
// through service-run to the devserver over HTTP (gzip NDJSON uploads),
// beside the same export into the local sink by `courier export`, in one
// run: the cost of the network path. COURIER_BENCH_RECORDS sets the size.
func BenchmarkExportToBackend(b *testing.B) {
	bin := benchBinary(b)
	records := benchEnvInt(b, "COURIER_BENCH_RECORDS", 100_000)
	const repos, recordBytes = 10, 512
	cfg := map[string]any{"orgs": 1, "repos_per_org": repos, "items_per_repo": records / repos, "record_bytes": recordBytes}
	raw, _ := json.Marshal(cfg)
	total := (records / repos) * repos

	b.Run("local-sink", func(b *testing.B) {
		for range b.N {
			root := filepath.Join(b.TempDir(), "root")
			cfgFile := filepath.Join(b.TempDir(), "syn.json")
			if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			cmd := exec.Command(bin, "--root", root, "--log-format", "json", "export", "--integration", "synthetic", "--config", cfgFile)
			cmd.Env = benchChildEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("export: %v\n%s", err, out)
			}
			report(b, total, recordBytes, time.Since(start))
		}
	})
	b.Run("service-to-devserver", func(b *testing.B) {
		for range b.N {
			dev := devservertest.Start(b, devserver.Options{})
			root := filepath.Join(b.TempDir(), "root")
			enroll := exec.Command(bin, "--root", root, "enroll", dev.EnrollCode(b), "--backend-url", dev.URL, "--no-service")
			enroll.Env = benchChildEnv()
			if out, err := enroll.CombinedOutput(); err != nil {
				b.Fatalf("enroll: %v\n%s", err, out)
			}
			svc := benchStartService(b, bin, root, "http://127.0.0.1:1/v2/enqueue")
			ctx := context.Background()
			agents, err := dev.Admin.Agents(ctx)
			if err != nil || len(agents) != 1 {
				b.Fatalf("agents: %v", err)
			}
			params, _ := json.Marshal(map[string]any{"integrations": []any{map[string]any{"id": "bench", "type": "synthetic", "config": cfg}}})
			start := time.Now()
			c, err := dev.Admin.AddCommand(ctx, agents[0].ID, devserver.NewCommand{Type: "export", Params: params})
			if err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			if r, err := dev.Admin.WaitResult(wctx, c.ID); err != nil || r.Status != "succeeded" {
				cancel()
				b.Fatalf("result: %+v %v", r, err)
			}
			// The result is sent after the records are durable, not after
			// they are uploaded: wait for the last upload too.
			for {
				ups, err := dev.Admin.Uploads(wctx, devserver.UploadFilter{RoutingKey: "export/bench", NoRecords: true})
				n := 0
				for _, u := range ups {
					n += u.Count
				}
				if err == nil && n >= total {
					break
				}
				if wctx.Err() != nil {
					cancel()
					b.Fatalf("%d of %d records uploaded", n, total)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			report(b, total, recordBytes, time.Since(start))
			svc.stop(b)
		}
	})
}

func report(b *testing.B, records, recordBytes int, d time.Duration) {
	b.ReportMetric(float64(records)/d.Seconds(), "records/s")
	// Payload bytes only (the record's data), before gzip on the wire.
	b.ReportMetric(float64(records*recordBytes)/d.Seconds()/1e6, "MB/s")
	b.Logf("%s: %d records in %s", b.Name(), records, d.Round(time.Millisecond))
}
