package plugintest

import (
	"bytes"
	"os"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// CheckGolden decodes file (bytes an older build encoded) into a message
// of want's type and compares it with want, then encodes want and
// compares the bytes with file's: both directions of a wire compatibility
// promise.
func CheckGolden(t *testing.T, file string, want proto.Message) {
	t.Helper()
	old, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := want.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(old, got); err != nil || !proto.Equal(got, want) {
		t.Errorf("%s decodes to %v, %v; want %v", file, got, err, want)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil || !bytes.Equal(b, old) {
		t.Errorf("%s: today's encoding %x, %v; the old one %x", file, b, err, old)
	}
}

// CheckMethods compares a gRPC service's name and its methods' and
// streams' names (the only names on the wire: /service/method) with the
// ones older builds call.
func CheckMethods(t *testing.T, d grpc.ServiceDesc, service string, methods, streams []string) {
	t.Helper()
	var gotM, gotS []string
	for _, m := range d.Methods {
		gotM = append(gotM, m.MethodName)
	}
	for _, s := range d.Streams {
		gotS = append(gotS, s.StreamName)
	}
	if d.ServiceName != service || !slices.Equal(gotM, methods) || !slices.Equal(gotS, streams) {
		t.Errorf("service %s, methods %v, streams %v; want %s, %v, %v", d.ServiceName, gotM, gotS, service, methods, streams)
	}
}
