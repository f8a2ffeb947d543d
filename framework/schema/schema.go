package schema

import "fmt"

// AttrType is the type of a configuration attribute. 0 is invalid.
type AttrType int

const (
	TypeString   AttrType = 1
	TypeNumber   AttrType = 2 // integer
	TypeBool     AttrType = 3
	TypeDuration AttrType = 4 // string in the job ("50ms"), int64 nanoseconds in Config
	TypeSize     AttrType = 5 // string in the job ("1GiB"), int64 bytes in Config
	// TypeAddress is an address or offset (a guest physical address):
	// a string in the job, hexadecimal ("0x1000000") or a size ("16M"),
	// int64 in Config (0 to math.MaxInt64).
	TypeAddress AttrType = 6
)

// Attribute is one attribute of a plugin's configuration block.
type Attribute struct {
	Name     string
	Type     AttrType
	Required bool
	// Default is what an absent optional attribute takes; nil: none.
	// Per Type: TypeString a string, TypeNumber an int64, TypeBool a
	// bool; TypeDuration, TypeSize and TypeAddress an int64 (nanoseconds,
	// bytes, the address) or a string as the job file writes one
	// ("300ms", "64M", "0x1000000"), never negative; Config holds the
	// int64 either way. Validate refuses any other Go type (int,
	// time.Duration), as the conformance suites do.
	Default any
	Doc     string
}

// Schema is the configuration block a plugin accepts. The job parser
// decodes the block against it (unknown attributes are errors), so the
// plugin only receives well-typed values.
type Schema []Attribute

// Config is a decoded configuration block: attribute name → string,
// int64 or bool (durations, sizes and addresses as int64). Absent optional
// attributes carry their default or are missing.
type Config map[string]any

func (t AttrType) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeNumber:
		return "number"
	case TypeBool:
		return "bool"
	case TypeDuration:
		return "duration"
	case TypeSize:
		return "size"
	case TypeAddress:
		return "address"
	}
	return fmt.Sprintf("AttrType(%d)", int(t))
}

// defaultTypes says which Go values t takes as a Default, "" when t is
// invalid.
func (t AttrType) defaultTypes() string {
	switch t {
	case TypeString:
		return "string"
	case TypeNumber:
		return "int64"
	case TypeBool:
		return "bool"
	case TypeDuration:
		return `int64 nanoseconds or a string like "300ms"`
	case TypeSize:
		return `int64 bytes or a string like "64MiB"`
	case TypeAddress:
		return `int64 or a string like "0x1000000"`
	}
	return ""
}
