package main

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count given on the command line: a number with an optional unit, binary
// (KiB, MiB, GiB, TiB; K, M, G, T) or decimal (kB, MB, GB, TB).
type Size int64

// UnmarshalText parses a size such as "512MiB", "2G" or "1048576".
func (s *Size) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("size %q: want a number with an optional unit such as 512MiB or 2G", t)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40,
		"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}[unit]
	if mult == 0 {
		return fmt.Errorf("size %q: unknown unit %q", t, unit)
	}
	*s = Size(v * mult)
	return nil
}
