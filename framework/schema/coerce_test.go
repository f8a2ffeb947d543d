package schema

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCoerce(t *testing.T) {
	schema := Schema{
		{Name: "listen", Type: TypeString, Required: true},
		{Name: "streams", Type: TypeNumber, Default: int64(2)},
		{Name: "compress", Type: TypeString, Default: "lz4"},
		{Name: "timeout", Type: TypeDuration, Default: int64(10e9)},
		{Name: "tls", Type: TypeBool},
	}
	var in map[string]any
	json.Unmarshal([]byte(`{"listen":"127.0.0.1:1","streams":4,"tls":true}`), &in)
	got, err := Coerce(schema, in)
	if err != nil {
		t.Fatal(err)
	}
	if got["listen"] != "127.0.0.1:1" || got["streams"] != int64(4) || got["compress"] != "lz4" ||
		got["timeout"] != int64(10e9) || got["tls"] != true {
		t.Errorf("got %#v", got)
	}
	for _, bad := range []string{`{}`, `{"listen":1}`, `{"listen":"x","streams":1.5}`, `{"listen":"x","nope":1}`, `{"listen":"x","tls":"yes"}`} {
		in = nil
		json.Unmarshal([]byte(bad), &in)
		if _, err := Coerce(schema, in); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err %v, want ErrBadConfig", bad, err)
		}
	}
	_, err = Coerce(schema, map[string]any{"a": 1, "b": 2})
	if err == nil || !strings.Contains(err.Error(), `unknown attribute "a"`) || !strings.Contains(err.Error(), "missing required") {
		t.Errorf("all problems at once: %v", err)
	}
}
