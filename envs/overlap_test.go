package envs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
)

// TestLoad_WritableBindAboveAnotherIsRefused: a container that may write a
// host directory can swap a directory beneath it for a symlink to / after
// validation, and Docker follows it whenever the container mounting that
// directory (re)starts. So a writable bind mount above another one is
// refused, in the environment and against every container of the host;
// sources are compared resolved, and Docker is given the resolved path.
func TestLoad_WritableBindAboveAnotherIsRefused(t *testing.T) {
	allowed := t.TempDir()
	for _, d := range []string{"x", "a", "real"} {
		os.MkdirAll(filepath.Join(allowed, d), 0o755)
	}
	if err := os.Symlink(filepath.Join(allowed, "real"), filepath.Join(allowed, "link")); err != nil {
		t.Fatal(err)
	}
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	svc := func(name string, vols ...string) string {
		return "  " + name + ":\n    image: " + img + "\n    volumes: ['" + strings.Join(vols, "', '") + "']\n"
	}
	policy := Policy{AllowedBindMounts: []string{allowed}}
	host := func(binds ...HostBind) func(context.Context) ([]HostBind, error) {
		return func(context.Context) ([]HostBind, error) { return binds, nil }
	}
	hint := " (mount it read-only, or mount directories side by side rather than one inside the other (docs/security.md#mounts))"
	tests := []struct {
		name    string
		compose string
		host    func(context.Context) ([]HostBind, error)
		want    []string
	}{
		{
			name:    "a writable bind above another service's",
			compose: "services:\n" + svc("a", allowed+"/x:/mnt:ro") + svc("b", allowed+":/a"),
			want:    []string{f + ":b:volumes[0]: writable bind mount of " + allowed + " is above " + allowed + "/x, which service a mounts: a container could put a symlink there, and Docker follows it when that container (re)starts" + hint},
		},
		{
			name:    "within one service",
			compose: "services:\n" + svc("a", allowed+":/a", allowed+"/x:/x:ro"),
			want:    []string{f + ":a:volumes[0]: writable bind mount of " + allowed + " is above " + allowed + "/x, which this service's volumes[1] mounts: a container could put a symlink there, and Docker follows it when that container (re)starts" + hint},
		},
		{
			name:    "through a symlink, compared resolved",
			compose: "services:\n" + svc("a", allowed+"/link/sub:/mnt:ro") + svc("b", allowed+"/real:/a"),
			want:    []string{f + ":b:volumes[0]: writable bind mount of " + allowed + "/real is above " + allowed + "/real/sub, which service a mounts: a container could put a symlink there, and Docker follows it when that container (re)starts" + hint},
		},
		{
			name:    "read-only above, writable below, equal and side by side",
			compose: "services:\n" + svc("a", allowed+":/all:ro", allowed+"/x:/x") + svc("b", allowed+"/x:/x", allowed+"/a:/a"),
		},
		{
			name:    "inside a directory another container of the host writes",
			compose: "services:\n" + svc("a", allowed+"/x:/mnt:ro"),
			host:    host(HostBind{Container: "other-b-1", Source: allowed, RW: true}, HostBind{Container: "other-c-1", Source: allowed + "/x", RW: true}),
			want:    []string{f + ":a:volumes[0]: bind mount of " + allowed + "/x is inside " + allowed + ", which container other-b-1 on this host mounts writable: it could put a symlink there, and Docker follows it when this container (re)starts" + hint},
		},
		{
			name:    "writing above another container's bind",
			compose: "services:\n" + svc("b", allowed+":/a"),
			host:    host(HostBind{Container: "old-a-1", Source: allowed + "/x/", RW: false}),
			want:    []string{f + ":b:volumes[0]: writable bind mount of " + allowed + " is above " + allowed + "/x, which container old-a-1 on this host mounts: a container could put a symlink there, and Docker follows it when that one (re)starts" + hint},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{f: tc.compose}, Options{Policy: policy, HostBinds: tc.host})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}

	t.Run("Docker gets the resolved path", func(t *testing.T) {
		env, ps := load(t, map[string]string{f: "services:\n" + svc("a", allowed+"/link:/mnt:ro")}, Options{Policy: policy})
		if len(ps) > 0 || env.Service("a").Config.Volumes[0].Source != filepath.Join(allowed, "real") {
			t.Fatalf("source %q, problems %v", env.Service("a").Config.Volumes[0].Source, ps)
		}
	})
	t.Run("the host's containers cannot be listed: an outage", func(t *testing.T) {
		dir := writeTree(t, map[string]string{f: "services:\n" + svc("a", allowed+"/x:/mnt:ro")})
		_, err := Load(t.Context(), dir, "prod", Options{Policy: policy, HostBinds: func(context.Context) ([]HostBind, error) { return nil, errors.New("engine down") }})
		if !failure.IsOutage(err) || !strings.Contains(err.Error(), "engine down") {
			t.Fatalf("Load: %v (%s), want an outage", err, failure.Of(err))
		}
	})
	t.Run("no host bind, no listing", func(t *testing.T) {
		_, ps := load(t, map[string]string{f: "services:\n  a: {image: " + img + "}\n"}, Options{HostBinds: func(context.Context) ([]HostBind, error) {
			t.Fatal("listed the host's containers for an env without host binds")
			return nil, nil
		}})
		if len(ps) > 0 {
			t.Fatal(ps)
		}
	})
}

// TestLoad_AbsoluteSymlinkWalkedAsTheKernelDoes: a symlink in the checkout
// whose absolute target reads as inside the checkout once cleaned
// ("<checkout>/envs/prod/hostlink/../secret.env") but leaves it when walked
// (hostlink leads to a host directory, and ".." goes up from there) is
// refused; Docker would have followed it to the host's file. A symlink
// that stays inside is mounted by its resolved path.
func TestLoad_AbsoluteSymlinkWalkedAsTheKernelDoes(t *testing.T) {
	host := t.TempDir()
	os.MkdirAll(filepath.Join(host, "sub"), 0o755)
	os.WriteFile(filepath.Join(host, "secret.env"), []byte("S="+marker+"\n"), 0o644)
	const f = "envs/prod/compose.yaml"
	dir := writeTree(t, map[string]string{
		f:                         "services:\n  w:\n    image: r/app@" + d1 + "\n    volumes: ['./evil:/x:ro', './fine:/y:ro']\n",
		"envs/prod/secret.env":    "decoy\n",
		"envs/prod/conf/app.conf": "a=1\n",
	})
	ck, _ := filepath.EvalSymlinks(dir)
	for link, target := range map[string]string{
		"envs/prod/hostlink": filepath.Join(host, "sub"),
		"envs/prod/evil":     ck + "/envs/prod/hostlink/../secret.env",
		"envs/prod/fine":     ck + "/envs/prod/conf/../conf/app.conf",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Load(t.Context(), dir, "prod", Options{})
	want := f + ":w:volumes[0]: bind mount of envs/prod/evil resolves to " + filepath.Join(host, "secret.env") + ", outside the config repository"
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !strings.HasPrefix(ps[0].String(), want) || strings.Contains(ps[0].String(), marker) {
		t.Fatalf("Load: %v\nwant %s", err, want)
	}

	os.Remove(filepath.Join(dir, "envs/prod/evil"))
	os.WriteFile(filepath.Join(dir, f), []byte("services:\n  w:\n    image: r/app@"+d1+"\n    volumes: ['./fine:/y:ro']\n"), 0o644)
	env, err := Load(t.Context(), dir, "prod", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if src := env.Service("w").Config.Volumes[0].Source; src != filepath.Join(ck, "envs/prod/conf/app.conf") {
		t.Fatalf("Docker gets %s, want the resolved path", src)
	}
}
