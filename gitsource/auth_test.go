package gitsource

import "testing"

func TestParseEndpoint_SchemesAndCredentials(t *testing.T) {
	tests := []struct {
		raw, url, safe, scheme, user, pass string
		wantErr                            bool
	}{
		{raw: "https://git.example.org/ops/config.git", url: "https://git.example.org/ops/config.git", safe: "https://git.example.org/ops/config.git", scheme: "https"},
		{raw: "https://bot:s3cret@git.example.org/c.git", url: "https://git.example.org/c.git", safe: "https://git.example.org/c.git", scheme: "https", user: "bot", pass: "s3cret"},
		{raw: "ssh://git@git.example.org:2222/c.git", url: "ssh://git@git.example.org:2222/c.git", safe: "ssh://git@git.example.org:2222/c.git", scheme: "ssh", user: "git"},
		{raw: "git@github.com:ops/config.git", url: "git@github.com:ops/config.git", safe: "git@github.com:ops/config.git", scheme: "ssh", user: "git"},
		{raw: "file:///srv/config.git", url: "file:///srv/config.git", safe: "file:///srv/config.git", scheme: "file"},
		{raw: "ftp://x/y", wantErr: true},
		{raw: "https:///nohost", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			e, err := parseEndpoint(tc.raw)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", e)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.url != tc.url || e.safe != tc.safe || e.scheme != tc.scheme || e.user != tc.user || e.password != tc.pass {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestSanitize_RemovesPasswordsFromText(t *testing.T) {
	in := `Get "https://bot:s3cret@git.example.org/c.git/info/refs": dial tcp: refused`
	if got := sanitizeText(in); got != `Get "https://git.example.org/c.git/info/refs": dial tcp: refused` {
		t.Fatalf("sanitizeText = %q", got)
	}
}
