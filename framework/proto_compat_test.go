package framework_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ferryvm/ferry/framework/hint"
	hpb "github.com/ferryvm/ferry/framework/hint/proto"
	"github.com/ferryvm/ferry/framework/transport"
	tpb "github.com/ferryvm/ferry/framework/transport/proto"
)

var update = flag.Bool("update", false, "rewrite the current API version's testdata/proto/*.golden")

// pluginKinds are the plugin kinds, their API versions and their protos.
var pluginKinds = []struct {
	name string
	api  int
	file protoreflect.FileDescriptor
}{
	{"transport", transport.APIVersion, tpb.File_framework_transport_proto_transport_proto},
	{"hint", hint.APIVersion, hpb.File_framework_hint_proto_hint_proto},
}

// TestProtoGolden is the proto rule of docs/ARCHITECTURE.md#versions. It
// pins what each plugin kind's protos put on the wire for the current
// API version (testdata/proto/<kind>.api<N>.golden; -update rewrites it),
// and checks that the previous API version's protos, dumped from the old
// code (transport.api1.golden: commit 206800e^), survive in the current
// ones: every RPC, and every field reachable from it with the same number,
// kind and cardinality, every enum value with the same number.
func TestProtoGolden(t *testing.T) {
	for _, k := range pluginKinds {
		t.Run(k.name, func(t *testing.T) {
			cur := protoDump(k.file)
			path := filepath.Join("testdata", "proto", fmt.Sprintf("%s.api%d.golden", k.name, k.api))
			if *update {
				if err := os.WriteFile(path, []byte(cur), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes the current API version's golden)", err)
			}
			if cur != string(want) {
				t.Errorf("the %s protos changed within API version %d: a compatible addition needs go test -update, "+
					"anything an older plugin would misread a new APIVersion (docs/ARCHITECTURE.md#versions)\ngot:\n%s", k.name, k.api, cur)
			}
			if k.api == 1 {
				return
			}
			prev, err := os.ReadFile(filepath.Join("testdata", "proto", fmt.Sprintf("%s.api%d.golden", k.name, k.api-1)))
			if err != nil {
				t.Fatalf("the previous API version's golden: %v (keep it when the APIVersion changes)", err)
			}
			for _, p := range protoBreaks(string(prev), cur) {
				t.Error(p)
			}
		})
	}
}

// protoSchema is a parsed protoDump.
type protoSchema struct {
	rpcs   map[string][]string            // service.method → input, output, client streams, server streams
	fields map[string]map[string][]string // message → number → name, kind, cardinality, type
	enums  map[string]map[string]string   // enum → number → name
}

func parseProtoDump(s string) protoSchema {
	p := protoSchema{rpcs: map[string][]string{}, fields: map[string]map[string][]string{}, enums: map[string]map[string]string{}}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		switch {
		case f[0] == "rpc" && len(f) == 6:
			p.rpcs[f[1]] = f[2:]
		case f[0] == "field" && len(f) == 7:
			if p.fields[f[1]] == nil {
				p.fields[f[1]] = map[string][]string{}
			}
			p.fields[f[1]][f[2]] = f[3:]
		case f[0] == "enum" && len(f) == 4:
			if p.enums[f[1]] == nil {
				p.enums[f[1]] = map[string]string{}
			}
			p.enums[f[1]][f[2]] = f[3]
		}
	}
	return p
}

// protoBreaks lists what of prev is missing or different in cur. Types are
// matched by position (an RPC's input, a field's type), not by name, so
// moving a message to a shared proto package keeps it compatible.
func protoBreaks(prev, cur string) []string {
	p, c := parseProtoDump(prev), parseProtoDump(cur)
	var out []string
	seen := map[[2]string]bool{}
	var msg func(pm, cm string)
	msg = func(pm, cm string) {
		if seen[[2]string{pm, cm}] {
			return
		}
		seen[[2]string{pm, cm}] = true
		for num, pf := range p.fields[pm] {
			cf, ok := c.fields[cm][num]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("field %s (%s) of %s is gone from %s", num, pf[0], pm, cm))
			case pf[1] != cf[1] || pf[2] != cf[2]:
				out = append(out, fmt.Sprintf("field %s of %s was %s %s, is %s %s", num, pm, pf[2], pf[1], cf[2], cf[1]))
			case pf[1] == "message":
				msg(pf[3], cf[3])
			case pf[1] == "enum":
				for n, name := range p.enums[pf[3]] {
					if _, ok := c.enums[cf[3]][n]; !ok {
						out = append(out, fmt.Sprintf("value %s (%s) of enum %s is gone", n, name, pf[3]))
					}
				}
			}
		}
	}
	for name, pr := range p.rpcs {
		cr, ok := c.rpcs[name]
		switch {
		case !ok:
			out = append(out, "rpc "+name+" is gone")
		case pr[2] != cr[2] || pr[3] != cr[3]:
			out = append(out, "rpc "+name+" changed streaming")
		default:
			msg(pr[0], cr[0])
			msg(pr[1], cr[1])
		}
	}
	return out
}

func TestProtoBreaks(t *testing.T) {
	prev := "rpc S.M a.Req a.Resp false true\nfield a.Req 1 x int64 optional -\nfield a.Req 2 v message optional a.V\n" +
		"field a.V 1 s string optional -\nfield a.Resp 1 k enum optional a.K\nenum a.K 0 K_INVALID\nenum a.K 1 K_ONE\n"
	if got := protoBreaks(prev, prev); len(got) != 0 {
		t.Fatalf("a schema breaks itself: %q", got)
	}
	grown := strings.ReplaceAll(prev, "a.V", "shared.V") + "field a.Req 3 y bool optional -\nfield shared.V 2 n int64 optional -\n"
	if got := protoBreaks(prev, grown); len(got) != 0 {
		t.Fatalf("additions and a moved message break: %q", got)
	}
	for _, tc := range []struct{ cur, want string }{
		{strings.Replace(prev, "field a.Req 1 x int64", "field a.Req 1 x string", 1), "field 1 of a.Req was optional int64"},
		{strings.Replace(prev, "field a.V 1 s string optional", "field a.V 1 s string repeated", 1), "field 1 of a.V"},
		{strings.Replace(prev, "field a.Req 2 ", "field a.Req 4 ", 1), "field 2 (v) of a.Req is gone"},
		{strings.Replace(prev, "enum a.K 1 K_ONE", "enum a.K 2 K_ONE", 1), "value 1 (K_ONE)"},
		{strings.Replace(prev, "rpc S.M", "rpc S.N", 1), "rpc S.M is gone"},
		{strings.Replace(prev, "false true", "false false", 1), "rpc S.M changed streaming"},
	} {
		got := protoBreaks(prev, tc.cur)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%q: breaks %q, want one containing %q", tc.cur, got, tc.want)
		}
	}
}
