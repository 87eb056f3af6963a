package redact

import "testing"

func TestKeyKeepsPrefixAndTellsKeysApart(t *testing.T) {
	a := "R012aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	b := "R012bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	ra, rb := Key(a), Key(b)
	if ra == rb {
		t.Fatalf("two keys with the same prefix redact alike: %q", ra)
	}
	if want := "R012" + Ellipsis; ra[:len(want)] != want || len([]rune(ra)) != 4+1+8 {
		t.Errorf("Key(%q) = %q, want R012… and 8 hex digits", a, ra)
	}
	for _, short := range []string{"abc", "abcd"} {
		if got := Key(short); got[:len(Ellipsis)] != Ellipsis {
			t.Errorf("Key(%q) = %q shows characters of a key of 4 or fewer", short, got)
		}
	}
	if Key("") != "" {
		t.Error("the empty key has a redacted form")
	}
}

func TestMatchesAcceptsBothSpellings(t *testing.T) {
	rk := "R0utingKeyR0utingKeyR0utingKey01"
	key := "events/" + rk
	red := Key(rk)
	ascii := rk[:4] + "..." + red[len(rk[:4])+len(Ellipsis):]
	for _, form := range []string{red, "events/" + red, ascii, "events/" + ascii} {
		if !IsRedacted(form) || !Matches(form, key) {
			t.Errorf("%q: IsRedacted %v, Matches %v; want both", form, IsRedacted(form), Matches(form, key))
		}
	}
	if IsRedacted(rk) || Matches(rk, key) {
		t.Errorf("the whole key counts as a redacted form")
	}
	if Matches(red, "events/R0utingKeyR0utingKeyR0utingKey02") {
		t.Error("a redacted form matches another key with the same prefix")
	}
	if QueueKey("export/int_1") != "export/int_1" || QueueKey(key) != "events/"+red {
		t.Error("QueueKey redacts the wrong keys")
	}
}
