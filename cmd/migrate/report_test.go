package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ferryvm/ferry/framework/engine"
	"github.com/ferryvm/ferry/vmm/api"
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

// TestModeAnswerKeysDocumented: docs/JOBS.md's section on -resolve,
// -start-postcopy and -check with -json names every key of their answers (`key`
// in a table row), those of their steps too; of the VMM answers they
// carry as they came (a look's, the switch's), it names every key.
func TestModeAnswerKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/JOBS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### `-resolve`, `-start-postcopy` and `-check` with `-json`\n")
	if !ok {
		t.Fatal("docs/JOBS.md has no section on -resolve, -start-postcopy and -check with -json")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	keys := func(typ reflect.Type, visit func(key string, f reflect.StructField)) {
		var walk func(reflect.Type)
		walk = func(typ reflect.Type) {
			for f := range typ.Fields() {
				if f.Anonymous {
					walk(f.Type)
					continue
				}
				if key, _, _ := strings.Cut(f.Tag.Get("json"), ","); key != "" && key != "-" {
					visit(key, f)
				}
			}
		}
		walk(typ)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[resolveAnswer](), reflect.TypeFor[actSent](), reflect.TypeFor[startPostcopyAnswer](),
		reflect.TypeFor[checkAnswer](), reflect.TypeFor[pluginChecked]()} {
		keys(typ, func(key string, f reflect.StructField) {
			if !strings.Contains(section, "| `"+key+"` |") {
				t.Errorf("docs/JOBS.md does not document the key %q (%s.%s) in a row of its -json section", key, typ.Name(), f.Name)
			}
		})
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[api.ResolveResult](), reflect.TypeFor[api.StartPostcopyResult]()} {
		keys(typ, func(key string, f reflect.StructField) {
			if !strings.Contains(section, "`"+key+"`") {
				t.Errorf("docs/JOBS.md does not name the key %q (api.%s.%s) in its -json section", key, typ.Name(), f.Name)
			}
		})
	}
}
