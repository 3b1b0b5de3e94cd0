package engine

import (
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

func TestEngine_ErrorClasses(t *testing.T) {
	t.Parallel()
	d, reg, e, img := pushedApp(t, "classes")
	ctx := t.Context()
	t.Run("unknown digest is a verdict", func(t *testing.T) {
		ref := img.Repo + "@sha256:" + strings.Repeat("ab", 32)
		_, err := e.EnsureImage(ctx, ref)
		t.Log(err)
		if !failure.IsVerdict(err) {
			t.Fatalf("pull of a digest the registry does not have: %v (%s)", err, failure.Of(err))
		}
	})
	t.Run("unknown repository is a verdict", func(t *testing.T) {
		ref := reg.Host + "/berth/nothing-here@" + img.Digest
		_, err := e.EnsureImage(ctx, ref)
		t.Log(err)
		if !failure.IsVerdict(err) {
			t.Fatalf("pull from a repository the registry does not have: %v (%s)", err, failure.Of(err))
		}
	})
	t.Run("engine unreachable is an outage", func(t *testing.T) {
		c, err := client.NewClientWithOpts(client.WithHost("unix://"+filepath.Join(t.TempDir(), "no.sock")), client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatal(err)
		}
		down := New(c, nil)
		if _, err := down.List(ctx, "x"); !failure.IsOutage(err) {
			t.Fatalf("List from no engine: %v (%s)", err, failure.Of(err))
		}
		if _, err := down.EnsureImage(ctx, img.Ref()); !failure.IsOutage(err) {
			t.Fatalf("EnsureImage from no engine: %v (%s)", err, failure.Of(err))
		}
	})
	if _, err := e.EnsureImage(ctx, img.Ref()); err != nil {
		t.Fatal(err)
	}
	t.Run("a command not in the image is a verdict", func(t *testing.T) {
		env, pl := deployable(t, d, img, "    entrypoint: [/no/such/binary]\n")
		if err := e.EnsureProject(ctx, env.Project); err != nil {
			t.Fatal(err)
		}
		req, err := CreateRequest(env.Project, env.Services[0], pl)
		if err != nil {
			t.Fatal(err)
		}
		id, err := e.Create(ctx, req)
		if err == nil {
			err = e.Start(ctx, id)
		}
		t.Log(err)
		if !failure.IsVerdict(err) {
			t.Fatalf("start of a missing command: %v (%s)", err, failure.Of(err))
		}
	})
	t.Run("a name another env or no berth env holds is a verdict; this env's leftover an outage", func(t *testing.T) {
		env, pl := deployable(t, d, img, "")
		if err := e.EnsureProject(ctx, env.Project); err != nil {
			t.Fatal(err)
		}
		other := "o" + d.RunID
		d.CleanupLabel(t, LabelEnv, other)
		d.CleanupLabel(t, "berth-test.foreign", d.RunID)
		for i, tc := range []struct {
			labels map[string]string
			want   failure.Class
			text   string
		}{
			{map[string]string{LabelEnv: other, LabelService: "eu-web"}, failure.Verdict, "held by env " + other + "'s container (service eu-web)"},
			{map[string]string{"berth-test.foreign": d.RunID}, failure.Verdict, "held by a container berth does not manage"},
			{map[string]string{LabelEnv: pl.Env}, failure.Outage, "Conflict"},
		} {
			p := pl
			p.Slot = 10 + i
			req, err := CreateRequest(env.Project, env.Services[0], p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.c.ContainerCreate(ctx, &container.Config{Image: img.Ref(), Labels: tc.labels}, nil, nil, nil, req.Name); err != nil {
				t.Fatal(err)
			}
			_, err = e.Create(ctx, req)
			t.Log(err)
			if failure.Of(err) != tc.want || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("create over a name held by %v: %v (%s), want %s and %q", tc.labels, err, failure.Of(err), tc.want, tc.text)
			}
		}
	})
	t.Run("an invalid request is a verdict", func(t *testing.T) {
		env, pl := deployable(t, d, img, "")
		pl.Slot = 2
		req, err := CreateRequest(env.Project, env.Services[0], pl)
		if err != nil {
			t.Fatal(err)
		}
		req.Host.Binds = []string{"relative/path:/data"}
		if _, err := e.Create(ctx, req); !failure.IsVerdict(err) {
			t.Fatalf("create with a relative bind: %v (%s)", err, failure.Of(err))
		}
	})
}
