package integrations_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"courier/integrations"
)

func TestSecretNeverShows(t *testing.T) {
	type cfg struct {
		Token integrations.Secret `json:"token"`
	}
	const value = "ghp_0123456789abcdef"
	c := cfg{Token: value}
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	log.Info().Interface("cfg", c).Stringer("token", c.Token).Msg("x")
	j, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Token), string(j), logs.String()} {
		if strings.Contains(out, value) || !strings.Contains(out, "[redacted]") {
			t.Errorf("secret shown: %s", out)
		}
	}
	// It decodes as the plain string it is.
	var back cfg
	if err := json.Unmarshal([]byte(`{"token":"`+value+`"}`), &back); err != nil || string(back.Token) != value {
		t.Fatalf("decode: %v %q", err, back.Token)
	}
	if integrations.Secret("").String() != "" {
		t.Fatal("an empty secret should print empty, so 'missing' stays visible")
	}
}
