package sopsfile

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// Key is one key of a file, and whether SOPS encrypted its value.
type Key struct {
	Name      string
	Encrypted bool
}

// Entry is one decrypted value.
type Entry struct {
	Key       string
	Value     string
	Encrypted bool // the file held it encrypted (a secret)
}

// Keys lists the file's keys in order, without decrypting anything.
func (f *File) Keys() []Key {
	var out []Key
	f.walk(func(e entry, encrypted bool) {
		out = append(out, Key{Name: e.key, Encrypted: encrypted})
	})
	return out
}

// Walk visits the values in file order, as written (an encrypted value
// is its ciphertext), with whether each is encrypted.
func (f *File) Walk(visit func(key, value string, encrypted bool)) {
	f.walk(func(e entry, enc bool) { visit(e.key, e.value, enc) })
}

// Recipients are the age recipients the data key is encrypted to.
func (f *File) Recipients() []string {
	var out []string
	for _, a := range f.meta.age {
		out = append(out, a.Recipient)
	}
	return out
}

// walk visits the values in file order with whether each is encrypted,
// keeping the comments before each value as SOPS's walkBranch does (the
// comment regexes look at them).
func (f *File) walk(visit func(e entry, encrypted bool)) {
	var comments []string
	for _, e := range f.entries {
		if e.comment {
			comments = append(comments, e.value)
			continue
		}
		visit(e, f.meta.encrypted(e.key, comments))
		comments = comments[:0]
	}
}

// encrypted is SOPS's shouldBeEncrypted for a value at path [key] of a
// dotenv file (one level: the comments before it).
func (m *metadata) encrypted(key string, comments []string) bool {
	enc := true
	if m.unencryptedSuffix != "" && strings.HasSuffix(key, m.unencryptedSuffix) {
		enc = false
	}
	if m.encryptedSuffix != "" {
		enc = strings.HasSuffix(key, m.encryptedSuffix)
	}
	if m.unencryptedRegex != nil && m.unencryptedRegex.MatchString(key) {
		enc = false
	}
	if m.encryptedRegex != nil {
		enc = m.encryptedRegex.MatchString(key)
	}
	if m.unencryptedCommentRegex != nil {
		for _, c := range comments {
			if m.unencryptedCommentRegex.MatchString(c) {
				enc = false
				break
			}
		}
	}
	if m.encryptedCommentRgx != nil {
		enc = false
		for _, c := range comments {
			if m.encryptedCommentRgx.MatchString(c) {
				enc = true
				break
			}
		}
	}
	return enc
}

// Decrypt decrypts the file with the host's age identities and checks its
// MAC, as `sops decrypt` does: the data key from the first age recipient
// an identity opens, every encrypted value with AES-256-GCM (the key path
// as additional data), then the MAC, a SHA-512 over the values in order,
// encrypted with the data key and the last-modified time. A file berth
// cannot open, a value that does not decrypt, or a MAC that does not
// match is an error; no error holds a value.
func (f *File) Decrypt(ids []age.Identity) ([]Entry, error) {
	key, err := f.dataKey(ids)
	if err != nil {
		return nil, err
	}
	h := sha512.New()
	if f.meta.macOnlyEncrypted {
		h.Write(macOnlyEncryptedInit)
	}
	var out []Entry
	var bad error
	f.walk(func(e entry, encrypted bool) {
		if bad != nil {
			return
		}
		v := e.value
		if encrypted {
			v, bad = decryptValue(e.value, key, e.key+":")
			if bad != nil {
				bad = fmt.Errorf("line %d (%s): %w", e.line, shown(e.key), bad)
				return
			}
		}
		if !f.meta.macOnlyEncrypted || encrypted {
			h.Write([]byte(v))
		}
		out = append(out, Entry{Key: e.key, Value: v, Encrypted: encrypted})
	})
	if bad != nil {
		return nil, bad
	}
	mac, err := decryptValue(f.meta.mac, key, f.meta.lastModified.Format(time.RFC3339))
	if err != nil {
		return nil, fmt.Errorf("cannot decrypt the MAC: %w", err)
	}
	if mac != fmt.Sprintf("%X", h.Sum(nil)) {
		return nil, errors.New("MAC mismatch: the file was changed after SOPS encrypted it")
	}
	return out, nil
}

// dataKey opens the data key with the first age recipient one of ids
// opens (SOPS: one key group, any key of it).
func (f *File) dataKey(ids []age.Identity) ([]byte, error) {
	if f.meta.groups > 1 {
		return nil, fmt.Errorf("the data key is shared among %d key groups (Shamir's secret sharing), which berth does not read", f.meta.groups)
	}
	if len(f.meta.age) == 0 {
		return nil, fmt.Errorf("the data key is encrypted to no age recipient (only %s)", strings.Join(f.meta.otherKeys, ", "))
	}
	for _, a := range f.meta.age {
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(a.Enc)), ids...)
		if err != nil {
			continue
		}
		if key, err := io.ReadAll(io.LimitReader(r, 1024)); err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("the host's age identity opens none of the file's %d age recipients (%s)", len(f.meta.age), strings.Join(shownAll(f.Recipients()), ", "))
}

// macOnlyEncryptedInit starts the MAC of a file whose MAC covers only its
// encrypted values (sops.go MACOnlyEncryptedInitialization), so that it
// never equals the MAC of the same values covering all.
var macOnlyEncryptedInit = []byte{0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0xb, 0xb, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69}

// encValue is SOPS's value format (aes/cipher.go), matched the same way.
var encValue = regexp.MustCompile(`^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`)

// decryptValue is SOPS's Cipher.Decrypt for string values: "" stays "";
// anything else must be ENC[AES256_GCM,…,type:str].
func decryptValue(s string, key []byte, aad string) (string, error) {
	if s == "" {
		return "", nil
	}
	m := encValue.FindStringSubmatch(s)
	if m == nil {
		return "", errors.New("not a SOPS encrypted value")
	}
	var parts [3][]byte
	for i := range parts {
		b, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil {
			return "", errors.New("an encrypted value that is not base64")
		}
		parts[i] = b
	}
	data, iv, tag := parts[0], parts[1], parts[2]
	if m[4] != "str" {
		return "", fmt.Errorf("an encrypted value of type %q: berth reads string values", shown(m[4]))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("the data key: %w", err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(iv))
	if err != nil {
		return "", fmt.Errorf("an encrypted value: %w", err)
	}
	plain, err := gcm.Open(nil, iv, append(data, tag...), []byte(aad))
	if err != nil {
		return "", errors.New("an encrypted value that does not decrypt with the data key (changed, or moved from another key)")
	}
	return string(plain), nil
}

func shownAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = shown(s)
	}
	return out
}
