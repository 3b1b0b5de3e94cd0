package envs

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/sopsfile"
)

// SOPSPrefix marks a secret reference to a value a SOPS-encrypted file of
// the environment holds: "sops:FILE#KEY", FILE relative to envs/<env>/
// (".env", "secrets.env"), a dotenv file SOPS encrypted for age
// recipients. The host decrypts it with its own age identity; the value
// is then treated exactly like a Vault value.
const SOPSPrefix = "sops:"

// SOPSFile is the env-relative file a sops: reference names.
func (r SecretRef) SOPSFile() (string, bool) {
	return strings.CutPrefix(r.Path, SOPSPrefix)
}

// Ciphertext is the encrypted value a sops: reference names, as its file
// holds it ("" for a Vault reference): two revisions whose ciphertexts
// differ hold a new value, or the same one encrypted again (sops keeps a
// value's ciphertext when other values of the file change).
func (r SecretRef) Ciphertext() string {
	if r.Sealed == nil {
		return ""
	}
	out := ""
	r.Sealed.Walk(func(key, value string, encrypted bool) {
		if key == r.Field && encrypted {
			out = value
		}
	})
	return out
}

var sopsFileRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// parseSOPSRef parses "sops:FILE#KEY".
func parseSOPSRef(s string) (SecretRef, error) {
	rest := strings.TrimPrefix(s, SOPSPrefix)
	file, key, ok := strings.Cut(rest, "#")
	switch {
	case !ok:
		return SecretRef{}, fmt.Errorf("secret reference %q has no #KEY", s)
	case !sopsFileRe.MatchString(file) || slices.Contains(strings.Split(file, "/"), ".."):
		return SecretRef{}, fmt.Errorf("secret reference %q has a malformed file (a path inside the environment's directory)", s)
	case !varNameRe.MatchString(key):
		return SecretRef{}, fmt.Errorf("secret reference %q has a malformed key", s)
	}
	return SecretRef{Path: SOPSPrefix + file, Field: key}, nil
}

// attachSealed reads the SOPS files the services' sops: references name,
// through the checkout, and checks each reference names a key the file
// holds encrypted. The values stay encrypted: only the host's key opens
// them, when a deploy resolves them.
func attachSealed(c *collector, co *checkout, envDir string, env *Env) {
	bad := map[string]string{}
	open := func(rel string) (*sopsfile.File, string) {
		path := co.rel(filepath.Join(envDir, filepath.FromSlash(rel)))
		if f, ok := env.Sealed[path]; ok || bad[rel] != "" {
			return f, bad[rel]
		}
		b, err := co.readFile(filepath.Join(envDir, filepath.FromSlash(rel)))
		if err == nil {
			var f *sopsfile.File
			if f, err = sopsfile.Parse(b); err == nil {
				if env.Sealed == nil {
					env.Sealed = map[string]*sopsfile.File{}
				}
				env.Sealed[path] = f
				return f, ""
			}
		}
		bad[rel] = err.Error()
		return nil, bad[rel]
	}
	for i := range env.Services {
		s := &env.Services[i]
		for _, kind := range []struct {
			refs  map[string]SecretRef
			field string
		}{{s.Berth.Secrets, "secrets"}, {s.Berth.SecretFiles, "secret_files"}} {
			for _, name := range slices.Sorted(maps.Keys(kind.refs)) {
				ref := kind.refs[name]
				rel, ok := ref.SOPSFile()
				if !ok {
					continue
				}
				field := extKey + "." + kind.field + "." + name
				f, why := open(rel)
				if f == nil {
					c.service(s.Name, field, fmt.Sprintf("%s: %s", rel, why), "encrypt it with sops --input-type dotenv for the host's age recipient")
					continue
				}
				if enc, found := encryptedKey(f, ref.Field); !found {
					c.service(s.Name, field, fmt.Sprintf("%s holds no key %s", rel, ref.Field), "")
					continue
				} else if !enc {
					c.service(s.Name, field, fmt.Sprintf("%s holds %s unencrypted", rel, ref.Field), "a secret must be encrypted: check the file's unencrypted_suffix or encrypted_regex")
					continue
				}
				ref.Sealed = f
				kind.refs[name] = ref
			}
		}
	}
}

// encryptedKey says whether f holds key, and encrypted.
func encryptedKey(f *sopsfile.File, key string) (encrypted, found bool) {
	for _, k := range f.Keys() {
		if k.Name == key {
			return k.Encrypted, true
		}
	}
	return false, false
}

// sealedDotEnv turns a .env that SOPS encrypted into the interpolation
// variables it holds in the clear; its encrypted keys are returned apart:
// they reach a container only through x-berth.secrets, never ${…}.
func sealedDotEnv(b []byte) (*sopsfile.File, types.Mapping, map[string]bool, error) {
	f, err := sopsfile.Parse(b)
	if err != nil {
		return nil, nil, nil, err
	}
	plain, sealed := types.Mapping{}, map[string]bool{}
	f.Walk(func(key, value string, encrypted bool) {
		if encrypted {
			sealed[key] = true
			return
		}
		plain[key] = value
	})
	return f, plain, sealed, nil
}

// guardSealed makes interpolating an encrypted .env key a problem: its
// value is not known to compose-go (and must not be: a secret in a
// service's environment: would reach the plan, the config hash and
// docker inspect).
func guardSealed(lookup interp.LookupValue, sealed map[string]bool, report func(key string)) interp.LookupValue {
	return func(key string) (string, bool) {
		if sealed[key] {
			report(key)
			return "", false
		}
		return lookup(key)
	}
}

// countRefs counts Vault and sops: references.
func countRefs(refs map[string]SecretRef) (vault, sops int) {
	for _, r := range refs {
		if _, ok := r.SOPSFile(); ok {
			sops++
		} else {
			vault++
		}
	}
	return vault, sops
}
