package forge

import "testing"

func TestHashesRoundTrip(t *testing.T) {
	m := map[int64]string{3: "abc", 1: "def"}
	tok := FormatHashes(m)
	if tok != "1:def,3:abc" {
		t.Fatalf("token %q", tok)
	}
	back := ParseHashes(tok)
	if len(back) != 2 || back[1] != "def" || back[3] != "abc" {
		t.Fatalf("parsed %v", back)
	}
	if len(ParseHashes("garbage")) != 0 {
		t.Fatal("a bad token must read as empty")
	}
}
