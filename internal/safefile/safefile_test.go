package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadRefusesWhatIsNotASmallRegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// 1 GiB, sparse: no disk is used.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	good := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(good, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:                         "not a regular file",
		"/dev/zero":                  "not a regular file",
		big:                          "1073741824 bytes, more than the",
		dir:                          "not a regular file",
		filepath.Join(dir, "absent"): "no such file",
	} {
		_, err := Read("ca_file", path, 0, 0)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "ca_file: "+path+": ") {
			t.Errorf("%s: %v, want an error naming ca_file and the file, saying %q", path, err, want)
		}
	}
	if b, err := Read("ca_file", good, 0, 0); err != nil || !strings.HasPrefix(string(b), "-----BEGIN") {
		t.Fatalf("a regular file: %q %v", b, err)
	}
}
