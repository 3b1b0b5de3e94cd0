package sopsfile

import (
	"os"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
)

// testdata/shop.env and partial.env were encrypted by sops 3.13.3 for the
// key in testdata/age-key.txt (made for these tests only); shop.env also
// for a second recipient.

func readFile(t *testing.T, name string) *File {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if !IsEncrypted(b) {
		t.Fatalf("%s: IsEncrypted false", name)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKeys_SaysWhatIsEncryptedWithoutTheKey(t *testing.T) {
	for _, tc := range []struct {
		file      string
		encrypted []string
		plain     []string
		nrecip    int
	}{
		{"shop.env", []string{"DB_PASSWORD", "API_TOKEN", "EMPTY", "MULTI"}, []string{"NOTE_unencrypted"}, 2},
		{"partial.env", []string{"DB_PASSWORD", "API_TOKEN"}, []string{"EMPTY", "NOTE_unencrypted", "MULTI"}, 1},
	} {
		f := readFile(t, tc.file)
		var enc, pl []string
		for _, k := range f.Keys() {
			if k.Encrypted {
				enc = append(enc, k.Name)
			} else {
				pl = append(pl, k.Name)
			}
		}
		if !slices.Equal(enc, tc.encrypted) || !slices.Equal(pl, tc.plain) {
			t.Errorf("%s: encrypted %v plain %v, want %v and %v", tc.file, enc, pl, tc.encrypted, tc.plain)
		}
		if n := len(f.Recipients()); n != tc.nrecip || !strings.HasPrefix(f.Recipients()[0], "age1") {
			t.Errorf("%s: recipients %v", tc.file, f.Recipients())
		}
	}
}

func TestDecrypt_Testdata(t *testing.T) {
	key, err := os.ReadFile("testdata/age-key.txt")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(strings.NewReader(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shop.env", "partial.env"} {
		es, err := readFile(t, name).Decrypt(ids)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := "DB_PASSWORD=s3cr3t\nAPI_TOKEN=tok=with=eq\nEMPTY=\nNOTE_unencrypted=plain\nMULTI=a\\nb\n"
		if got := render(es); got != want {
			t.Errorf("%s:\n%s", name, got)
		}
	}
	other, _ := age.GenerateX25519Identity()
	_, err = readFile(t, "shop.env").Decrypt([]age.Identity{other})
	if err == nil || !strings.Contains(err.Error(), "opens none of the file's 2 age recipients") {
		t.Errorf("another key: %v", err)
	}
}

func TestParse_RefusesWhatItCannotRead(t *testing.T) {
	b, err := os.ReadFile("testdata/shop.env")
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"a plain file", "A=1\nB=2\n", "not encrypted with SOPS"},
		{"no KEY=value", good + "garbage\n", "not KEY=value"},
		{"a key set twice", good + "DB_PASSWORD=x\n", "DB_PASSWORD is set again (first on line 2)"},
		{"a bad time", strings.Replace(good, "sops_lastmodified=2026", "sops_lastmodified=x2026", 1), "not an RFC 3339 time"},
		{"two encryption rules", good + "sops_encrypted_regex=^A\n", "more than one of"},
		{"no master key", "sops_lastmodified=2026-12-06T15:39:49Z\nsops_mac=\n", "no master key"},
		{"too big", strings.Repeat("#", MaxSize+1), "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
	// Shamir key groups and other master keys parse (berth validate shows
	// them) but do not decrypt.
	for _, tc := range []struct{ name, content, want string }{
		{"key groups", "sops_lastmodified=2026-12-06T15:39:49Z\nsops_key_groups__list_0__map_age__list_0__map_recipient=age1x\nsops_key_groups__list_1__map_age__list_0__map_recipient=age1y\n", "Shamir"},
		{"pgp only", "sops_lastmodified=2026-12-06T15:39:49Z\nsops_pgp__list_0__map_fp=ABC\n", "no age recipient (only pgp)"},
	} {
		f, err := Parse([]byte(tc.content))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := f.Decrypt(nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want %q, got %v", tc.name, tc.want, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, n := range []string{"shop.env", "partial.env"} {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("sops_lastmodified=2026-12-06T15:39:49Z\nsops_key_groups__list_9__map_age__list_99999999999999999999__map_enc=x\n"))
	other, _ := age.GenerateX25519Identity()
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		file.Keys()
		file.Decrypt([]age.Identity{other}) //nolint:errcheck // must not panic
	})
}
