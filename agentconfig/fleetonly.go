package agentconfig

import (
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v4"

	"berth.dev/berth/fleet"
)

// LoadFleet reads the fleet: block, for `berth ui` (which reads etcd and
// needs nothing else): from an agent config, checked whole as Load checks
// it, or from a file that holds only a fleet: block (an ops box that runs
// no agent), checked with the same rules.
func LoadFleet(path string) (*fleet.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(b) <= maxConfigBytes && fleetOnly(b) {
		var c struct {
			Fleet *fleet.Config `yaml:"fleet"`
		}
		var doc yaml.Node
		_ = yaml.Unmarshal(b, &doc)
		root := doc.Content[0]
		var ps problems
		checkNode(root, &c, "", &ps)
		_ = root.Decode(&c)
		if len(ps.list) == 0 && c.Fleet != nil {
			f := c.Fleet.Defaults()
			ps.addErr(f.Validate())
			c.Fleet = &f
		}
		if len(ps.list) > 0 {
			return nil, fmt.Errorf("%s:\n%w", path, ps.list)
		}
		return c.Fleet, nil
	}
	cfg, err := Load(path)
	if err != nil {
		return nil, err
	}
	if cfg.Fleet == nil {
		return nil, errors.New(path + ": no fleet: block (docs/fleet.md)")
	}
	f := cfg.Fleet.Defaults()
	return &f, nil
}

// fleetOnly says whether b is a mapping whose only key is fleet.
func fleetOnly(b []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return false
	}
	root := doc.Content[0]
	return root.Kind == yaml.MappingNode && len(root.Content) == 2 && root.Content[0].Value == "fleet"
}
