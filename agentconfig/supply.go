package agentconfig

import (
	"fmt"
	"io"
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

// maxAgeKeyFile bounds the identity file: a key is a line of 74 bytes.
const maxAgeKeyFile = 64 << 10

// AgeIdentities reads sops.age_key_file (nil without sops): a regular file
// that only its owner may read or write, as age-keygen -o writes it — the
// key opens every value encrypted to the host. The file's content never
// appears in an error.
func (c *Config) AgeIdentities() ([]age.Identity, error) {
	if c.SOPS == nil {
		return nil, nil
	}
	path := c.SOPS.AgeKeyFile
	// Stat first: opening a FIFO would wait for a writer.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: its group or others may read or write the host's age key (chmod 600 it)", path, perm)
	}
	if fi.Size() > maxAgeKeyFile {
		return nil, fmt.Errorf("%s holds %d bytes, more than an age identity file (%d)", path, fi.Size(), maxAgeKeyFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ids, err := age.ParseIdentities(io.LimitReader(f, maxAgeKeyFile))
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
