package agentconfig

import (
	"fmt"
	"os"

	"filippo.io/age"

	"berth.dev/berth/imagesig"
)

// ImagesConfig is what the host requires of the images it pulls.
type ImagesConfig struct {
	// Verify lists the signatures images need (docs/security.md, signed
	// images): the host's, which a repository can add to and never lift.
	Verify []imagesig.Rule `yaml:"verify"`
}

// SOPSConfig decrypts the values a repository keeps encrypted with SOPS.
type SOPSConfig struct {
	// AgeKeyFile holds the host's age identity (AGE-SECRET-KEY-1…), the
	// private half of a recipient the files are encrypted to.
	AgeKeyFile string `yaml:"age_key_file"`
}

// ImagePolicy compiles images.verify, reading its key and trusted-root
// files (nil without rules).
func (c *Config) ImagePolicy() (*imagesig.Policy, error) {
	if len(c.Images.Verify) == 0 {
		return nil, nil
	}
	return imagesig.Compile(c.Images.Verify, "images.verify", os.ReadFile)
}

// AgeIdentities reads sops.age_key_file (nil without sops). The file's
// content never appears in an error.
func (c *Config) AgeIdentities() ([]age.Identity, error) {
	if c.SOPS == nil {
		return nil, nil
	}
	f, err := os.Open(c.SOPS.AgeKeyFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("%s holds no age identity berth can read (want AGE-SECRET-KEY-1… lines)", c.SOPS.AgeKeyFile)
	}
	return ids, nil
}

func (c *Config) checkSupply(ps *problems) {
	if _, err := c.ImagePolicy(); err != nil {
		ps.addErr(err)
	}
	if c.SOPS == nil {
		return
	}
	if c.SOPS.AgeKeyFile == "" {
		ps.add("sops.age_key_file", "required: the host's age identity file")
		return
	}
	if _, err := c.AgeIdentities(); err != nil {
		ps.add("sops.age_key_file", err.Error())
	}
}
