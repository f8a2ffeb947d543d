package framework_test

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// protoDump renders what a plugin kind's protos put on the wire: every
// RPC of the files' services and every message and enum reachable from
// them (from any file), one self-contained line each, in a stable order:
//
//	rpc <service>.<method> <input> <output> <client streams> <server streams>
//	field <message> <number> <name> <kind> <cardinality> <message or enum type, or ->
//	enum <enum> <number> <name>
func protoDump(files ...protoreflect.FileDescriptor) string {
	d := &dumper{seen: map[protoreflect.FullName]bool{}}
	for _, f := range files {
		for i := 0; i < f.Services().Len(); i++ {
			s := f.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				m := s.Methods().Get(j)
				d.lines = append(d.lines, fmt.Sprintf("rpc %s.%s %s %s %t %t", s.Name(), m.Name(),
					m.Input().FullName(), m.Output().FullName(), m.IsStreamingClient(), m.IsStreamingServer()))
				d.message(m.Input())
				d.message(m.Output())
			}
		}
	}
	return strings.Join(d.lines, "\n") + "\n"
}

type dumper struct {
	lines []string
	seen  map[protoreflect.FullName]bool
}

func (d *dumper) message(m protoreflect.MessageDescriptor) {
	if d.seen[m.FullName()] {
		return
	}
	d.seen[m.FullName()] = true
	var next []protoreflect.MessageDescriptor
	for i := 0; i < m.Fields().Len(); i++ {
		f := m.Fields().Get(i)
		typ := "-"
		switch {
		case f.Message() != nil:
			typ = string(f.Message().FullName())
			next = append(next, f.Message())
		case f.Enum() != nil:
			typ = string(f.Enum().FullName())
			d.enum(f.Enum())
		}
		d.lines = append(d.lines, fmt.Sprintf("field %s %d %s %s %s %s", m.FullName(), f.Number(), f.Name(), f.Kind(), f.Cardinality(), typ))
	}
	for _, n := range next {
		d.message(n)
	}
}

func (d *dumper) enum(e protoreflect.EnumDescriptor) {
	if d.seen[e.FullName()] {
		return
	}
	d.seen[e.FullName()] = true
	for i := 0; i < e.Values().Len(); i++ {
		v := e.Values().Get(i)
		d.lines = append(d.lines, fmt.Sprintf("enum %s %d %s", e.FullName(), v.Number(), v.Name()))
	}
}
