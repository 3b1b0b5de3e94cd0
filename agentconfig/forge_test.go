package agentconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig_ForgeBlock(t *testing.T) {
	dir := t.TempDir()
	tok, ptok := filepath.Join(dir, "status-token"), filepath.Join(dir, "promote-token")
	os.WriteFile(tok, []byte("t"), 0o600)
	os.WriteFile(ptok, []byte("p"), 0o600)
	c, err := Load(writeConfig(t, "env: prod\nrepo: {url: https://github.com/acme/config.git}\nforge:\n  token_file: "+tok+"\n  promote: {token_file: "+ptok+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := c.ForgeClient("").Resolved()
	if err != nil || c.Forge.Context != "berth/{env}" || fc.Type != "github" || fc.Repo != "acme/config" || fc.TokenFile != tok {
		t.Fatalf("forge: %+v %+v %v", c.Forge, fc, err)
	}
	_, err = Load(writeConfig(t, "envs: [a, b]\nrepo: {url: https://git.example.org/acme/config.git}\nforge:\n  token_file: /nonexistent\n  context: deploy\n  target_url: javascript:x\n  promote: {token_file: /nonexistent}\n  merge: true\n"))
	for _, want := range []string{"forge.type", "forge.context", "forge.target_url", "forge.promote.token_file: must not be forge.token_file", "forge.token_file: stat /nonexistent", "forge.merge: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
