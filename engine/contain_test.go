package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// TestEngine_EnsureProjectRefusesAnotherProjectsNetworksAndVolumes: env
// "P" declaring volume "eu_data" gets Docker's name P_eu_data, which is
// project "P_eu"'s volume "data"; the same for networks, and for a volume
// made by hand. The real engine holds them; berth refuses each as a
// verdict naming it, and uses its own.
func TestEngine_EnsureProjectRefusesAnotherProjectsNetworksAndVolumes(t *testing.T) {
	d := testenv.Docker(t)
	e := patientEngine(d)
	ctx := t.Context()
	proj := "t" + d.RunID
	labels := func(more map[string]string) map[string]string {
		l := d.Labels()
		for k, v := range more {
			l[k] = v
		}
		return l
	}
	// Project proj_eu's volume "data" and network "default"; a volume
	// made by hand; and proj's own volume.
	for name, l := range map[string]map[string]string{
		proj + "_eu_data": {composeProject: proj + "_eu", composeVolume: "data"},
		proj + "_manual":  nil,
		proj + "_mine":    {composeProject: proj, composeVolume: "mine"},
	} {
		if _, err := d.Client.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: labels(l)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Client.NetworkCreate(ctx, proj+"_eu_default", network.CreateOptions{Labels: labels(map[string]string{composeProject: proj + "_eu", composeNetwork: "default"})}); err != nil {
		t.Fatal(err)
	}
	d.CleanupLabel(t, composeProject, proj)

	project := func(vols, nets []string) *types.Project {
		p := &types.Project{Name: proj, Volumes: types.Volumes{}, Networks: types.Networks{}}
		for _, v := range vols {
			p.Volumes[v] = types.VolumeConfig{Name: proj + "_" + v}
		}
		for _, n := range nets {
			p.Networks[n] = types.NetworkConfig{Name: proj + "_" + n}
		}
		return p
	}
	tests := []struct {
		name       string
		vols, nets []string
		want       string
	}{
		{"another project's volume", []string{"eu_data"}, nil, "volume " + proj + "_eu_data (volumes.eu_data): exists already and belongs to project \"" + proj + "_eu\" (as \"data\"): refusing to use it"},
		{"another project's network", nil, []string{"eu_default"}, "network " + proj + "_eu_default (networks.eu_default): exists already and belongs to project \"" + proj + "_eu\" (as \"default\"): refusing to use it"},
		{"a volume made by hand", []string{"manual"}, nil, "volume " + proj + "_manual (volumes.manual): exists already and belongs to no Compose project (made by hand, or by another tool): refusing to use it"},
		{"its own, existing or new", []string{"mine", "fresh"}, []string{"default"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.EnsureProject(ctx, project(tc.vols, tc.nets))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("EnsureProject: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want || !failure.IsVerdict(err)):
				t.Fatalf("EnsureProject: %v (%s), want the verdict %q", err, failure.Of(err), tc.want)
			}
		})
	}
	// Refused means untouched: the other project's volume kept its labels.
	v, err := d.Client.VolumeInspect(ctx, proj+"_eu_data")
	if err != nil || v.Labels[composeProject] != proj+"_eu" {
		t.Fatalf("the other project's volume: %v, %v", v.Labels, err)
	}
}

// TestEngine_HostBindsKeepABindOutOfAnotherContainersWritableOne: a
// container of another project on the real engine (created, not even
// started: a restart policy would start it with the engine) may write a
// host directory; an environment that mounts a directory inside it is
// refused, naming that container, and one that mounts beside it is not.
func TestEngine_HostBindsKeepABindOutOfAnotherContainersWritableOne(t *testing.T) {
	t.Parallel()
	d, e, img := pulledApp(t, "binds")
	ctx := t.Context()
	allowed := t.TempDir()
	for _, sub := range []string{"x", "y"} {
		if err := os.MkdirAll(filepath.Join(allowed, "w", sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := "t" + d.RunID + "-writer"
	if _, err := d.Client.ContainerCreate(ctx, &container.Config{Image: img.Ref(), Labels: d.Labels()},
		&container.HostConfig{NetworkMode: "none", RestartPolicy: container.RestartPolicy{Name: "always"},
			Mounts: []mount.Mount{{Type: mount.TypeBind, Source: filepath.Join(allowed, "w"), Target: "/a"}}}, nil, nil, name); err != nil {
		t.Fatal(err)
	}
	load := func(src string) error {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "envs/prod"), 0o755)
		os.WriteFile(filepath.Join(dir, "envs/prod/compose.yaml"), []byte("services:\n  r:\n    image: "+img.Ref()+"\n    volumes: ['"+src+":/mnt:ro']\nx-berth: {require_digests: false}\n"), 0o644)
		_, err := envs.Load(ctx, dir, "prod", envs.Options{Policy: envs.Policy{AllowedBindMounts: []string{allowed}}, HostBinds: e.HostBinds})
		return err
	}
	want := "envs/prod/compose.yaml:r:volumes[0]: bind mount of " + allowed + "/w/x is inside " + allowed + "/w, which container " + name + " on this host mounts writable"
	if err := load(filepath.Join(allowed, "w", "x")); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load: %v\nwant a problem with %q", err, want)
	}
	if err := load(allowed + "/elsewhere"); err != nil {
		t.Fatalf("a bind beside the writable one: %v", err)
	}
}

// TestEngine_StopGraceIsCappedWhateverTheContainerSays: a container created
// with a stop timeout of years, or Docker's -1 (forever), is stopped within
// envs.MaxStopGrace: berth reads the real container's config and caps it.
func TestEngine_StopGraceIsCappedWhateverTheContainerSays(t *testing.T) {
	t.Parallel()
	d, e, img := pulledApp(t, "grace")
	ctx := t.Context()
	for _, secs := range []int{87600 * 3600, -1, 7} {
		s := secs
		resp, err := d.Client.ContainerCreate(ctx, &container.Config{Image: img.Ref(), Labels: d.Labels(), StopTimeout: &s, StopSignal: "SIGWINCH"}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.stopGrace(ctx, resp.ID, nil)
		want := envs.MaxStopGrace
		if secs == 7 {
			want = 7 * time.Second
		}
		if err != nil || got != want {
			t.Errorf("stop timeout %d s: grace %s, %v; want %s", secs, got, err, want)
		}
	}
	if g, _ := e.stopGrace(ctx, "none", new(time.Duration(24*time.Hour))); g != envs.MaxStopGrace {
		t.Errorf("an explicit grace of a day: %s, want %s", g, envs.MaxStopGrace)
	}
}

// TestJobRequest_ImageJobNeverOnTheSharedBridge: a job with its own image
// runs on the project's default network, else a network of its own
// project, else none — never Docker's bridge, where other projects'
// containers are.
func TestJobRequest_ImageJobNeverOnTheSharedBridge(t *testing.T) {
	job := envs.JobSpec{Name: "j", Image: "reg.example/tool@" + digest}
	for _, tc := range []struct {
		name     string
		networks types.Networks
		want     string
	}{
		{"the default network", types.Networks{"default": {Name: "prod_default"}, "back": {Name: "prod_back"}}, "prod_default"},
		{"no default: the project's own first", types.Networks{"shared": {Name: "proxy", External: true}, "zback": {Name: "prod_zback"}, "back": {Name: "prod_back"}}, "prod_back"},
		{"no network of its own", types.Networks{"shared": {Name: "proxy", External: true}}, "none"},
		{"no network at all", nil, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &types.Project{Name: "prod", Networks: tc.networks}
			req, err := JobRequest(p, nil, job, JobPlacement{Project: "prod", Env: "prod", Job: "j", Run: "r1"})
			if err != nil {
				t.Fatal(err)
			}
			if string(req.Host.NetworkMode) != tc.want || strings.Contains(string(req.Host.NetworkMode), "bridge") {
				t.Errorf("network mode %q, want %q", req.Host.NetworkMode, tc.want)
			}
		})
	}
}
