package sopsfile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"berth.dev/berth/internal/testenv"
)

// sopsCLI runs the real sops (v3.13.3) in dir.
type sopsCLI struct {
	bin, dir string
}

func (s sopsCLI) run(t *testing.T, keyFile string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"HOME=" + s.dir, "PATH=" + os.Getenv("PATH"), "SOPS_AGE_KEY_FILE=" + keyFile}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return errb.String(), err
	}
	return out.String(), nil
}

// identity is an age key pair with its key file.
type identity struct {
	id   *age.X25519Identity
	file string
}

func newIdentity(t *testing.T, dir, name string) identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, name+".txt")
	if err := os.WriteFile(f, []byte("# "+name+"\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return identity{id: id, file: f}
}

func (i identity) recipient() string { return i.id.Recipient().String() }

const plain = `# the shop's secrets
DB_PASSWORD=s3cr3t
API_TOKEN=tok=with=equals
EMPTY=
NOTE_unencrypted=plain text
MULTI=first\nsecond
# a comment between
LAST=x
`

// TestDecrypt_AgreesWithTheSOPSCLI encrypts files with the real sops and
// checks that berth's reader decrypts exactly the files `sops decrypt`
// decrypts, to the same values, and refuses the others.
func TestDecrypt_AgreesWithTheSOPSCLI(t *testing.T) {
	cli := sopsCLI{bin: testenv.SOPS(t), dir: t.TempDir()}
	dir := cli.dir
	alice, bob, carol := newIdentity(t, dir, "alice"), newIdentity(t, dir, "bob"), newIdentity(t, dir, "carol")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	encrypt := func(name string, extra ...string) string {
		src := write(name+".plain.env", plain)
		args := append([]string{"encrypt", "--age", alice.recipient() + "," + bob.recipient(), "--input-type", "dotenv", "--output-type", "dotenv"}, extra...)
		out, err := cli.run(t, alice.file, append(args, src)...)
		if err != nil {
			t.Fatalf("sops encrypt: %v\n%s", err, out)
		}
		return write(name+".env", out)
	}
	edit := func(name, from string, change func(string) string) string {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".env", change(string(b)))
	}
	lineOf := func(s, prefix string) string {
		for l := range strings.SplitSeq(s, "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Fatalf("no line %s", prefix)
		return ""
	}

	base := encrypt("base")
	rotated := edit("rotated", base, func(s string) string { return s })
	if out, err := cli.run(t, alice.file, "rotate", "-i", "--input-type", "dotenv", "--output-type", "dotenv", rotated); err != nil {
		t.Fatalf("sops rotate: %v\n%s", err, out)
	}
	handedOver := edit("handed-over", base, func(s string) string { return s })
	if out, err := cli.run(t, alice.file, "rotate", "-i", "--add-age", carol.recipient(), "--rm-age", bob.recipient(), "--input-type", "dotenv", "--output-type", "dotenv", handedOver); err != nil {
		t.Fatalf("sops rotate --add-age --rm-age: %v\n%s", err, out)
	}
	regex := encrypt("regex", "--encrypted-regex", "^(DB_|API_)")
	unencSuffix := encrypt("unencrypted-suffix", "--unencrypted-suffix", "_TOKEN")
	encSuffix := encrypt("encrypted-suffix", "--encrypted-suffix", "_PASSWORD")
	unencRegex := encrypt("unencrypted-regex", "--unencrypted-regex", "^(NOTE|MULTI)")
	// The comment rules are set by a creation rule only.
	byComment := func(name, rule string) string {
		cfg := write(name+".sops.yaml", "creation_rules:\n  - age: "+alice.recipient()+"\n    "+rule+"\n")
		out, err := cli.run(t, alice.file, "--config", cfg, "encrypt", "--input-type", "dotenv", "--output-type", "dotenv", write(name+".plain.env", plain))
		if err != nil {
			t.Fatalf("sops encrypt (%s): %v\n%s", rule, err, out)
		}
		return write(name+".env", out)
	}
	encComment := byComment("encrypted-comment-regex", "encrypted_comment_regex: between")
	unencComment := byComment("unencrypted-comment-regex", "unencrypted_comment_regex: secrets")
	// A comment added in front of an encrypted value that the rule reads
	// as "leave it in the clear": the value's ciphertext is no longer
	// what the MAC covers.
	commentAdded := edit("comment-added", unencComment, func(s string) string {
		return strings.Replace(s, "\nLAST=", "\n#secrets\nLAST=", 1)
	})
	// sops itself keeps a key written twice; berth refuses the file
	// (which value a reader takes is a guess).
	duplicate := func() string {
		src := write("duplicate.plain.env", plain+"LAST=again\n")
		out, err := cli.run(t, alice.file, "encrypt", "--age", alice.recipient(), "--input-type", "dotenv", "--output-type", "dotenv", src)
		if err != nil {
			t.Fatalf("sops encrypt: %v\n%s", err, out)
		}
		return write("duplicate.env", out)
	}()
	// mac_only_encrypted is set by a creation rule only.
	cfg := write("mac-only.sops.yaml", "creation_rules:\n  - age: "+alice.recipient()+"\n    mac_only_encrypted: true\n")
	out, err := cli.run(t, alice.file, "--config", cfg, "encrypt", "--input-type", "dotenv", "--output-type", "dotenv", write("mac-only.plain.env", plain))
	if err != nil {
		t.Fatalf("sops encrypt (mac_only_encrypted): %v\n%s", err, out)
	}
	macOnly := write("mac-only.env", out)

	tamperMAC := edit("tampered-mac", base, func(s string) string {
		l := lineOf(s, "sops_mac=")
		i := strings.Index(l, "data:") + len("data:")
		c := "A"
		if l[i] == 'A' {
			c = "B"
		}
		flipped := l[:i] + c + l[i+1:]
		return strings.Replace(s, l, flipped, 1)
	})
	swapped := edit("swapped-values", base, func(s string) string {
		db, api := lineOf(s, "DB_PASSWORD="), lineOf(s, "API_TOKEN=")
		s = strings.Replace(s, db, "DB_PASSWORD="+strings.TrimPrefix(api, "API_TOKEN="), 1)
		return strings.Replace(s, api, "API_TOKEN="+strings.TrimPrefix(db, "DB_PASSWORD="), 1)
	})
	added := edit("line-added", base, func(s string) string { return "INJECTED=1\n" + s })
	removed := edit("line-removed", base, func(s string) string { return strings.Replace(s, lineOf(s, "LAST=")+"\n", "", 1) })
	redated := edit("redated", base, func(s string) string {
		l := lineOf(s, "sops_lastmodified=")
		return strings.Replace(s, l, "sops_lastmodified=2020-01-01T00:00:00Z", 1)
	})
	plainChanged := edit("mac-only-plain-changed", macOnly, func(s string) string {
		return strings.Replace(s, "NOTE_unencrypted=plain text", "NOTE_unencrypted=changed", 1)
	})
	plainChangedFull := edit("plain-changed", base, func(s string) string {
		return strings.Replace(s, "NOTE_unencrypted=plain text", "NOTE_unencrypted=changed", 1)
	})
	// The metadata is outside the MAC, the MAC's scope is not: claiming
	// it covers only the encrypted values changes what it is over.
	scopeNarrowed := edit("scope-narrowed", base, func(s string) string { return s + "sops_mac_only_encrypted=true\n" })
	clear := write("clear.env", plain)

	for _, tc := range []struct {
		name string
		file string
		key  identity
		ok   bool
		// berth refuses, with this reason, a file sops decrypts
		stricter string
	}{
		{"the first recipient", base, alice, true, ""},
		{"the second recipient", base, bob, true, ""},
		{"a key that is no recipient", base, carol, false, ""},
		{"a rotated data key", rotated, bob, true, ""},
		{"a recipient added by rotation", handedOver, carol, true, ""},
		{"a recipient removed by rotation", handedOver, bob, false, ""},
		{"encrypted_regex", regex, alice, true, ""},
		{"mac_only_encrypted", macOnly, alice, true, ""},
		{"mac_only_encrypted, a plain value changed", plainChanged, alice, true, ""},
		{"a plain value changed", plainChangedFull, alice, false, ""},
		{"a tampered MAC", tamperMAC, alice, false, ""},
		{"two values swapped", swapped, alice, false, ""},
		{"a line added", added, alice, false, ""},
		{"a line removed", removed, alice, false, ""},
		{"another last-modified time", redated, alice, false, ""},
		{"unencrypted_suffix", unencSuffix, alice, true, ""},
		{"encrypted_suffix", encSuffix, alice, true, ""},
		{"unencrypted_regex", unencRegex, alice, true, ""},
		{"encrypted_comment_regex", encComment, alice, true, ""},
		{"unencrypted_comment_regex", unencComment, alice, true, ""},
		{"a comment added that leaves a value in the clear", commentAdded, alice, false, ""},
		{"mac_only_encrypted added", scopeNarrowed, alice, false, ""},
		{"a key set twice", duplicate, alice, true, "LAST is set again"},
		{"a file sops did not encrypt", clear, alice, false, "not encrypted with SOPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, sopsErr := cli.run(t, tc.key.file, "decrypt", "--input-type", "dotenv", "--output-type", "dotenv", tc.file)
			if (sopsErr == nil) != tc.ok {
				t.Fatalf("sops decrypt: err %v (test expects ok=%v)\n%s", sopsErr, tc.ok, want)
			}
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(b)
			if tc.stricter != "" || (!tc.ok && err != nil) {
				if err == nil || !strings.Contains(err.Error(), tc.stricter) {
					t.Fatalf("want berth to refuse it (%s), got %v", tc.stricter, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			ids, err := age.ParseIdentities(strings.NewReader(mustRead(t, tc.key.file)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Decrypt(ids)
			if !tc.ok {
				if err == nil {
					t.Fatalf("berth decrypted a file sops refuses (%s)", strings.TrimSpace(want))
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("an error shows a value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("berth refused a file sops decrypts: %v", err)
			}
			if g, w := render(got), valuesOf(want); g != w {
				t.Errorf("values differ from sops decrypt:\nberth:\n%s\nsops:\n%s", g, w)
			}
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// render writes entries as sops decrypt writes a dotenv file.
func render(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Key + "=" + strings.ReplaceAll(e.Value, "\n", `\n`) + "\n")
	}
	return b.String()
}

// valuesOf drops the comments from sops decrypt's output.
func valuesOf(out string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
