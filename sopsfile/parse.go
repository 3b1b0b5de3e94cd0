package sopsfile

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"berth.dev/berth/internal/printable"
)

// Bounds on a file: a dotenv file of values is small.
const (
	MaxSize    = 1 << 20
	maxEntries = 4096
)

// File is a SOPS-encrypted dotenv file, parsed but not decrypted: what
// berth validate can say without the host's key.
type File struct {
	entries []entry
	meta    metadata
}

// entry is one line: KEY=value, or a comment (#…, which SOPS encrypts
// too).
type entry struct {
	line    int
	key     string // "" for a comment
	value   string // as written, \n turned into a newline (SOPS's dotenv store)
	comment bool
}

// metadata is the file's sops_* lines (SOPS's stores/stores.go metadata,
// flattened as its dotenv store writes it).
type metadata struct {
	age          []ageKey // the data key, encrypted to each age recipient
	otherKeys    []string // master keys of other kinds (pgp, kms, …): not berth's
	groups       int      // key_groups: Shamir's secret sharing
	lastModified time.Time
	mac          string
	version      string
	// which values SOPS encrypted: at most one rule
	unencryptedSuffix, encryptedSuffix           string
	unencryptedRegex, encryptedRegex             *regexp.Regexp
	unencryptedCommentRegex, encryptedCommentRgx *regexp.Regexp
	macOnlyEncrypted                             bool
}

type ageKey struct {
	Recipient string
	Enc       string // an armored age file holding the data key
}

// IsEncrypted reports whether b looks like a dotenv file SOPS encrypted:
// it has the sops_mac and sops_lastmodified lines every such file has.
func IsEncrypted(b []byte) bool {
	var mac, mod bool
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		mac = mac || bytes.HasPrefix(line, []byte("sops_mac="))
		mod = mod || bytes.HasPrefix(line, []byte("sops_lastmodified="))
	}
	return mac && mod
}

// Parse reads a dotenv file SOPS encrypted, the way SOPS's dotenv store
// reads it (lines split on \n, empty lines skipped, # starts a comment,
// KEY=value split at the first =, \n in a value is a newline), and checks
// its metadata. Errors name the line; no value appears in them.
func Parse(b []byte) (*File, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("a SOPS file of %d bytes, more than %d", len(b), MaxSize)
	}
	f := &File{}
	meta := map[string]string{}
	seen := map[string]int{}
	for i, line := range bytes.Split(b, []byte("\n")) {
		n := i + 1
		if len(line) == 0 {
			continue
		}
		if len(f.entries)+len(meta) == maxEntries {
			return nil, fmt.Errorf("more than %d lines", maxEntries)
		}
		if line[0] == '#' {
			f.entries = append(f.entries, entry{line: n, value: string(line[1:]), comment: true})
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			return nil, fmt.Errorf("line %d: not KEY=value", n)
		}
		key := string(k)
		if first, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: %s is set again (first on line %d)", n, shown(key), first)
		}
		seen[key] = n
		value := strings.ReplaceAll(string(v), `\n`, "\n")
		if m, ok := strings.CutPrefix(key, "sops_"); ok {
			meta[m] = value
			continue
		}
		f.entries = append(f.entries, entry{line: n, key: key, value: value})
	}
	if len(meta) == 0 {
		return nil, errors.New("not encrypted with SOPS (no sops_* lines)")
	}
	if err := f.meta.read(meta); err != nil {
		return nil, err
	}
	return f, nil
}

// The metadata keys as SOPS flattens them: a list of master keys of one
// kind, at the top or in a key group.
var (
	keyListRe  = regexp.MustCompile(`^(age|pgp|kms|gcp_kms|hckms|azure_kv|hc_vault)__list_(\d+)__map_([a-z_]+)$`)
	keyGroupRe = regexp.MustCompile(`^key_groups__list_(\d+)__map_(age|pgp|kms|gcp_kms|hckms|azure_kv|hc_vault)__list_(\d+)__map_([a-z_]+)$`)
)

// read checks the metadata as SOPS's ToInternal does: lastmodified must
// be RFC 3339, at most one rule says which values are encrypted (none:
// keys ending in _unencrypted are not).
func (m *metadata) read(meta map[string]string) error {
	lm, ok := meta["lastmodified"]
	if !ok {
		return errors.New("no sops_lastmodified line")
	}
	t, err := time.Parse(time.RFC3339, lm)
	if err != nil {
		return errors.New("sops_lastmodified is not an RFC 3339 time")
	}
	m.lastModified, m.mac, m.version = t, meta["mac"], meta["version"]
	rules := 0
	for _, r := range []struct {
		key string
		str *string
		re  **regexp.Regexp
	}{
		{"unencrypted_suffix", &m.unencryptedSuffix, nil},
		{"encrypted_suffix", &m.encryptedSuffix, nil},
		{"unencrypted_regex", nil, &m.unencryptedRegex},
		{"encrypted_regex", nil, &m.encryptedRegex},
		{"unencrypted_comment_regex", nil, &m.unencryptedCommentRegex},
		{"encrypted_comment_regex", nil, &m.encryptedCommentRgx},
	} {
		v := meta[r.key]
		if v == "" {
			continue
		}
		rules++
		if r.str != nil {
			*r.str = v
			continue
		}
		re, err := regexp.Compile(v)
		if err != nil {
			return fmt.Errorf("sops_%s is not a regular expression: %w", r.key, err)
		}
		*r.re = re
	}
	if rules > 1 {
		return errors.New("more than one of sops_encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex and unencrypted_comment_regex")
	}
	if rules == 0 {
		m.unencryptedSuffix = "_unencrypted"
	}
	if v, ok := meta["mac_only_encrypted"]; ok {
		// mapstructure's weak typing, as SOPS decodes it.
		b, err := strconv.ParseBool(v)
		if v != "" && err != nil {
			return errors.New("sops_mac_only_encrypted is not a boolean")
		}
		m.macOnlyEncrypted = b
	}
	return m.readKeys(meta)
}

// readKeys collects the master keys as SOPS's internalKeygroups does:
// the key groups when there are any, else the top-level lists. berth
// decrypts the data key with age only.
func (m *metadata) readKeys(meta map[string]string) error {
	top := map[int]*ageKey{}
	grouped := map[[2]int]*ageKey{}
	groups := map[int]bool{}
	add := func(kind string, a *ageKey, field, v string) {
		if kind != "age" {
			if !slices.Contains(m.otherKeys, kind) {
				m.otherKeys = append(m.otherKeys, kind)
			}
			return
		}
		switch field {
		case "recipient":
			a.Recipient = v
		case "enc":
			a.Enc = v
		}
	}
	get := func(m map[int]*ageKey, i int) *ageKey {
		if m[i] == nil {
			m[i] = &ageKey{}
		}
		return m[i]
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		if g := keyGroupRe.FindStringSubmatch(k); g != nil {
			gi, _ := strconv.Atoi(g[1])
			ki, _ := strconv.Atoi(g[3])
			groups[gi] = true
			if grouped[[2]int{gi, ki}] == nil {
				grouped[[2]int{gi, ki}] = &ageKey{}
			}
			add(g[2], grouped[[2]int{gi, ki}], g[4], meta[k])
		} else if g := keyListRe.FindStringSubmatch(k); g != nil {
			ki, _ := strconv.Atoi(g[2])
			add(g[1], get(top, ki), g[3], meta[k])
		}
		// SOPS ignores metadata it does not know.
	}
	m.groups = len(groups)
	if m.groups > 0 {
		for _, gk := range slices.SortedFunc(maps.Keys(grouped), func(a, b [2]int) int {
			if a[0] != b[0] {
				return a[0] - b[0]
			}
			return a[1] - b[1]
		}) {
			m.age = append(m.age, *grouped[gk])
		}
	} else {
		for _, i := range slices.Sorted(maps.Keys(top)) {
			if a := top[i]; a.Recipient != "" || a.Enc != "" {
				m.age = append(m.age, *a)
			}
		}
	}
	if len(m.age) == 0 && len(m.otherKeys) == 0 {
		return errors.New("no master key encrypts the data key (no sops_age__… lines)")
	}
	return nil
}

// shown cuts a string from the file to something an error can carry.
func shown(s string) string { return printable.Cut(s, 64) }
