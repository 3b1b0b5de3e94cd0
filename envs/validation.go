package envs

import (
	"context"
	"errors"
	"maps"
	"slices"
)

// Validation is one env of `berth validate` (docs/reference.md: its
// JSON): valid, with its counts and what its sealed files hold, or its
// problems, or the error that stopped its loading.
type Validation struct {
	Env      string   `json:"env"`
	OK       bool     `json:"ok"`
	Services int      `json:"services,omitempty"`
	Jobs     int      `json:"jobs,omitempty"`
	Problems Problems `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
	// Sealed says what the env's SOPS-encrypted files hold, read without
	// the host's key: which keys are encrypted, and for whom.
	Sealed []SealedFile `json:"sealed,omitempty"`
}

// SealedFile is what a SOPS-encrypted file of the env holds, read
// without the host's key: which keys are encrypted, and for whom.
type SealedFile struct {
	File       string   `json:"file"`
	Recipients []string `json:"recipients"`
	Encrypted  []string `json:"encrypted"`
	Plain      []string `json:"plain,omitempty"`
}

func sealedFiles(e *Env) []SealedFile {
	var out []SealedFile
	for _, path := range slices.Sorted(maps.Keys(e.Sealed)) {
		f := e.Sealed[path]
		r := SealedFile{File: path, Recipients: f.Recipients()}
		for _, k := range f.Keys() {
			if k.Encrypted {
				r.Encrypted = append(r.Encrypted, k.Name)
			} else {
				r.Plain = append(r.Plain, k.Name)
			}
		}
		out = append(out, r)
	}
	return out
}

// ValidateAll loads each env named from the checkout at dir as the agent
// does before a deploy (berth validate, in the config repo's own CI).
func ValidateAll(ctx context.Context, dir string, names []string, opts Options) []Validation {
	var out []Validation
	for _, name := range names {
		r := Validation{Env: name}
		e, err := Load(ctx, dir, name, opts)
		var ps Problems
		switch {
		case errors.As(err, &ps):
			r.Problems = ps
		case err != nil:
			r.Error = err.Error()
		default:
			r.OK, r.Services, r.Jobs, r.Sealed = true, len(e.Services), len(e.Jobs), sealedFiles(e)
		}
		out = append(out, r)
	}
	return out
}
