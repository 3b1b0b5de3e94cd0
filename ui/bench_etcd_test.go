package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/testenv"
)

// The fleet's page read from a real etcd (Debian's etcd-server): 1,000
// hosts (their live and last-seen records), 10 rollouts with a result
// per host, 20 jobs of 100 runs. Every request reads the overview anew
// (one transaction) and draws the page.
func BenchmarkFleetPage_1000HostsFromEtcd(b *testing.B) {
	etcd := testenv.StartEtcd(b)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	root := "/berth/prod/"
	var ops []clientv3.Op
	put := func(k string, v any) {
		body, _ := json.Marshal(v)
		ops = append(ops, clientv3.OpPut(root+k, string(body)))
		if len(ops) == 100 {
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	for _, o := range bigFleet().envs {
		for _, h := range o.Hosts {
			put("hosts/"+h.Host, h.HostState)
			put("seen/"+h.Host, map[string]any{"at": t0, "state": h.HostState})
		}
		for _, r := range o.Rollouts {
			put("rollout/"+r.Revision, r.Wave)
			for _, d := range r.Done {
				put("rollout/"+r.Revision+"/done/"+d.Host, d)
			}
		}
		for _, j := range o.Jobs {
			for _, r := range j.Runs {
				put(fmt.Sprintf("job/%s/run/%s", j.Job, r.Scheduled.Add(time.Duration(len(ops))*time.Minute).UTC().Format("20060102T150405.000000000Z")), r)
			}
		}
	}
	if len(ops) > 0 {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	c, err := fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: []string{etcd.ClientURL}}, Host: "ops"}, fleet.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s := &Server{Fleet: &Fleet{Reader: &fleet.Overviews{Client: c}}}
	now := t0
	s.Now = func() time.Time { now = now.Add(time.Hour); return now }
	benchPage(b, s.Handler(), "/")
}
