package envs

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseHostPorts reads policy.allowed_host_ports: "N" or "N-M", from 1 to
// 65535.
func ParseHostPorts(entries []string) ([][2]int, error) {
	var out [][2]int
	for _, e := range entries {
		lo, hi, ok := publishedRange(e)
		if !ok || lo < 1 {
			return nil, fmt.Errorf("%q is not a port or a range N-M of ports from 1 to 65535", e)
		}
		out = append(out, [2]int{lo, hi})
	}
	return out, nil
}

// publishedRange reads a published port: "N" or "N-M" (compose-go keeps
// a range it does not expand as written).
func publishedRange(s string) (lo, hi int, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, false
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, false
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, false
		}
	}
	if lo < 0 || hi < lo || hi > 65535 {
		return 0, 0, false
	}
	return lo, hi, true
}

func hostPortRange(r [2]int) string {
	if r[0] == r[1] {
		return strconv.Itoa(r[0])
	}
	return fmt.Sprintf("%d-%d", r[0], r[1])
}

// portsWithin says whether every port from lo to hi is in one of ranges.
func portsWithin(lo, hi int, ranges [][2]int) bool {
	for p := lo; p <= hi; {
		next := -1
		for _, r := range ranges {
			if p >= r[0] && p <= r[1] {
				next = max(next, r[1]+1)
			}
		}
		if next < 0 {
			return false
		}
		p = next
	}
	return true
}
