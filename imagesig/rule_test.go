package imagesig

import (
	"berth.dev/berth/internal/testenv"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestCompile_ReportsEveryProblemWithItsField(t *testing.T) {
	k := testenv.NewCosignKey(t)
	missing := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	_, err := Compile([]Rule{
		{Key: k.PubFile},
		{Prefix: "ghcr.io/acme", Key: k.PubFile, Mode: "audit"},
		{Prefix: "ghcr.io/acme"},
		{Prefix: "ghcr.io/acme", Key: k.PubFile, Keyless: &Keyless{}},
		{Prefix: "ghcr.io/acme", Keyless: &Keyless{Subject: "(", TrustedRoot: "/x"}},
		{Prefix: "ghcr.io/acme", Keyless: &Keyless{Issuer: "https://i", Subject: "(", TrustedRoot: "/x"}},
	}, "images.verify", func(p string) ([]byte, error) {
		if p == k.PubFile {
			return os.ReadFile(p)
		}
		return missing(p)
	})
	for _, want := range []string{
		"images.verify[0].prefix: a registry or repository prefix is required",
		`images.verify[1].mode: "audit" is neither enforce nor warn`,
		"images.verify[2].key: a rule names a cosign public key file (key) or a keyless identity (keyless)",
		"images.verify[3].key: a rule names either a key or keyless, not both",
		"images.verify[4].keyless.issuer: the certificate's OIDC issuer is required",
		"images.verify[5].keyless.subject: ",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	_, err = Compile([]Rule{{Prefix: "*", Key: "/etc/berth/cosign.pub"}}, "images.verify", missing)
	if err == nil || !strings.Contains(err.Error(), "images.verify[0].key: read /etc/berth/cosign.pub") {
		t.Errorf("unreadable key: %v", err)
	}
	_, err = Compile([]Rule{{Prefix: "*", Key: "k"}}, "images.verify", func(string) ([]byte, error) { return []byte("not a key"), nil })
	if err == nil || !strings.Contains(err.Error(), "not a PEM public key") {
		t.Errorf("garbage key: %v", err)
	}
}

func TestRule_MatchesWholeComponents(t *testing.T) {
	k := testenv.NewCosignKey(t)
	for _, tc := range []struct {
		prefix string
		match  []string
		not    []string
	}{
		{"*", []string{"nginx", "ghcr.io/a/b"}, nil},
		{"ghcr.io", []string{"ghcr.io/a/b", "ghcr.io/x"}, []string{"ghcr.io.evil.org/a", "nginx"}},
		{"ghcr.io/acme/", []string{"ghcr.io/acme/web", "ghcr.io/acme/team/api"}, []string{"ghcr.io/acme-evil/web", "ghcr.io/acm/web"}},
		{"ghcr.io/acme/web", []string{"ghcr.io/acme/web"}, []string{"ghcr.io/acme/website"}},
		{"docker.io/library", []string{"nginx", "docker.io/library/redis", "index.docker.io/library/redis"}, []string{"docker.io/acme/redis"}},
		{"docker.io/acme", []string{"acme/web", "docker.io/acme/api"}, []string{"nginx", "acme-x/web"}},
		{"nginx", nil, []string{"nginx"}}, // a registry named nginx, not Docker Hub's nginx
		{"docker.io/library/nginx", []string{"nginx"}, []string{"nginx-extra"}},
		{"127.0.0.1:5000", []string{"127.0.0.1:5000/a"}, []string{"127.0.0.1:50000/a"}},
		// Every spelling under which dockerd reaches the same registry: a
		// host name in capitals, with its trailing dot or its default
		// port, Docker Hub under its other names.
		{"registry.example.org/shop", []string{"REGISTRY.example.org/shop/web", "registry.example.org:443/shop/web", "registry.example.org./shop/web", "Registry.Example.ORG.:443/shop/web", "registry.example.org:80/shop/web"},
			[]string{"registry.example.org:5000/shop/web", "registry.example.org.evil/shop/web"}},
		{"Registry.Example.org:443", []string{"registry.example.org/x"}, nil},
		{"localhost:5000", []string{"LOCALHOST:5000/a", "localhost:5000/a"}, []string{"localhost/a"}},
		{"docker.io/acme", []string{"registry-1.docker.io/acme/web", "registry.hub.docker.com/acme/web", "INDEX.docker.io/acme/web"}, nil},
		{"registry-1.docker.io", []string{"acme/web", "nginx"}, nil},
	} {
		p, err := Compile([]Rule{{Prefix: tc.prefix, Key: k.PubFile}}, "images.verify", os.ReadFile)
		if err != nil {
			t.Fatal(err)
		}
		matching := func(img string) []*rule {
			repo, err := repoOf(img + "@sha256:" + strings.Repeat("a", 64))
			if err != nil {
				t.Fatal(err)
			}
			return p.matching(repo)
		}
		for _, img := range tc.match {
			if len(matching(img)) != 1 {
				t.Errorf("%q should match %s", tc.prefix, img)
			}
		}
		for _, img := range tc.not {
			if len(matching(img)) != 0 {
				t.Errorf("%q should not match %s", tc.prefix, img)
			}
		}
	}
}

func TestShown_KeepsRegistryStringsInCheck(t *testing.T) {
	if got := shown("\x1b[31mred\nline" + strings.Repeat("x", 200)); strings.ContainsAny(got, "\x1b\n") || len(got) > 104 {
		t.Errorf("printable let through %q", got)
	}
}
