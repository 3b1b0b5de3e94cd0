package secrets

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Value is a secret value. It redacts itself wherever it could be printed —
// fmt verbs, JSON — so a log line or error that mentions it by mistake
// shows "[redacted]"; Reveal is the one way to the value, used only to
// build a container's environment.
type Value struct{ v string }

const redacted = "[redacted]"

func (s Value) String() string                { return redacted }
func (s Value) GoString() string              { return redacted }
func (s Value) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (s Value) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Value) Format(f fmt.State, verb rune) { fmt.Fprint(f, redacted) }
func (s Value) Reveal() string                { return s.v }

// Digest is a SHA-256 of the value, for config hashes: it changes with the
// value and says nothing about it.
func (s Value) Digest() string {
	sum := sha256.Sum256([]byte(s.v))
	return hex.EncodeToString(sum[:])
}
