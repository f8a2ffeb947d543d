package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
)

// TestReportKeysDocumented: docs/JOBS.md names every key of the JSON
// report (`key` in a table row), the hint providers' included.
func TestReportKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/JOBS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[report](), reflect.TypeFor[engine.Report](), reflect.TypeFor[engine.HintStats]()} {
		for f := range typ.Fields() {
			key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if key == "" || key == "-" {
				continue // embedded
			}
			if !strings.Contains(string(doc), "| `"+key+"` |") {
				t.Errorf("docs/JOBS.md does not document the report key %q (%s.%s)", key, typ.Name(), f.Name)
			}
		}
	}
}
