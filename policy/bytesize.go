package policy

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a size in bytes in the configuration file: a number of bytes (8388608)
// or a number with a binary unit (512KiB, 8MiB, 1GiB; Ki, Mi and Gi too, as
// Kubernetes writes them).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	scale  int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"B", 1}}

// UnmarshalYAML reads a ByteSize from a scalar.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a size: use bytes or a number with KiB, MiB or GiB (8MiB)", n.Line, n.Value)
	}
	*b = v
	return nil
}

// ParseByteSize parses the forms ByteSize accepts.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	scale := int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, scale = strings.TrimSpace(rest), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/scale {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return ByteSize(n * scale), nil
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(b) >= u.scale && int64(b)%u.scale == 0 {
			return strconv.FormatInt(int64(b)/u.scale, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
