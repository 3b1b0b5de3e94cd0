package secrets

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"

	"filippo.io/age"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/sopsfile"
)

// SOPS resolves sops: references (envs.SOPSPrefix): values a
// SOPS-encrypted file of the revision holds, opened with the host's age
// identity. They are then what a Vault value is: a container's variable
// or file, redacted from kept output, never logged.
type SOPS struct {
	Identities []age.Identity
	// Salt keys the digests mixed into config hashes (SaltFile), so a
	// hash in a container's labels cannot confirm a guessed value.
	Salt []byte
}

// Resolve decrypts the files refs name (each once) and returns NAME=value
// pairs sorted by name and a salted digest of the values. A file the
// host's key does not open, a value that does not decrypt or a MAC that
// does not match is a verdict on the revision; nothing here waits on the
// network.
func (s *SOPS) Resolve(_ context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	opened := map[*sopsfile.File]map[string]string{}
	names := slices.Sorted(maps.Keys(refs))
	env := make([]string, 0, len(names))
	mac := hmac.New(sha256.New, s.Salt)
	for _, name := range names {
		ref := refs[name]
		file, _ := ref.SOPSFile()
		if ref.Sealed == nil {
			return nil, "", failure.AsVerdict(fmt.Errorf("secret %s (%s): not a SOPS reference of a loaded environment", name, ref))
		}
		vals, ok := opened[ref.Sealed]
		if !ok {
			es, err := ref.Sealed.Decrypt(s.Identities)
			if err != nil {
				return nil, "", failure.AsVerdict(fmt.Errorf("secret %s: decrypt %s: %w", name, file, err))
			}
			vals = map[string]string{}
			for _, e := range es {
				if e.Encrypted {
					vals[e.Key] = e.Value
				}
			}
			opened[ref.Sealed] = vals
		}
		v, ok := vals[ref.Field]
		if !ok {
			return nil, "", failure.AsVerdict(fmt.Errorf("secret %s (%s): %s holds no encrypted %s", name, ref, file, ref.Field))
		}
		env = append(env, name+"="+v)
		fmt.Fprintf(mac, "%s=%s=%d:%s\n", name, ref, len(v), v)
	}
	return env, hex.EncodeToString(mac.Sum(nil)), nil
}

// SaltFile reads the host's secret salt at path, making it (32 random
// bytes, 0600) the first time.
func SaltFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}
