package envs

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The readers of x-berth values: each reports a value of the wrong kind
// with its field and leaves the default.

// fields checks a decoded mapping for keys berth does not know.
func fields(m map[string]any, known []string, report func(field, msg, hint string), prefix string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			report(prefix+"."+k, fmt.Sprintf("unknown key %q", k), "known keys: "+strings.Join(known, ", "))
		}
	}
}

// asMap reads an extension value that must be a mapping.
func asMap(v any, field string, report func(field, msg, hint string)) (map[string]any, bool) {
	if v == nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		report(field, fmt.Sprintf("must be a mapping, not %T", v), "")
	}
	return m, ok
}

func asString(v any, field string, report func(field, msg, hint string)) (string, bool) {
	s, ok := v.(string)
	if !ok {
		report(field, fmt.Sprintf("must be a string, not %v", v), "")
	}
	return s, ok
}

func asBool(v any, field string, report func(field, msg, hint string)) bool {
	b, ok := v.(bool)
	if !ok {
		report(field, fmt.Sprintf("must be true or false, not %v", v), "")
	}
	return b
}

func asInt(v any, field string, report func(field, msg, hint string)) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case uint64:
		return int(n), true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	case string:
		if i, err := strconv.Atoi(n); err == nil {
			return i, true
		}
	}
	report(field, fmt.Sprintf("must be a whole number, not %v", v), "")
	return 0, false
}

// asEnum reads a string that must be one of allowed; what names the kind
// of value in the message ("role", "policy").
func asEnum(v any, field, what string, allowed []string, report func(field, msg, hint string)) (string, bool) {
	s, ok := asString(v, field, report)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		report(field, fmt.Sprintf("unknown %s %q", what, s), "one of "+strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

// asIntIn reads a whole number from lo to hi; outOfRange words the problem.
func asIntIn(v any, field string, lo, hi int, outOfRange func(n int) (msg, hint string), report func(field, msg, hint string)) (int, bool) {
	n, ok := asInt(v, field, report)
	if !ok {
		return 0, false
	}
	if n < lo || n > hi {
		msg, hint := outOfRange(n)
		report(field, msg, hint)
		return 0, false
	}
	return n, true
}

func asDuration(v any, field string, report func(field, msg, hint string)) time.Duration {
	s, ok := asString(v, field, report)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		report(field, fmt.Sprintf("%q is not a duration", s), `write e.g. "90s", "30m" or "1h30m"`)
		return 0
	}
	return d
}

var serviceKeys = []string{"role", "port", "secrets", "secret_files", "stop_first", "lb", "watch", "migration"}
