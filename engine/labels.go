package engine

import (
	"fmt"
	"strconv"
)

// Labels on every container berth manages. The actual state of a host is
// read from these, never only from berth's own files.
const (
	LabelEnv        = "berth.env"
	LabelService    = "berth.service"
	LabelRevision   = "berth.revision"
	LabelConfigHash = "berth.config-hash"
	// LabelSpecHash is the service's hash without its secrets' digests:
	// beside the config hash it tells a plan whether the config or only a
	// secret changed (docs/security.md: the config hash itself is never
	// shown for a service with secrets).
	LabelSpecHash = "berth.spec-hash"
	LabelRole     = "berth.role"
	LabelSlot     = "berth.slot"

	// Compose's own labels, so that `docker compose -p PROJECT ps/logs`
	// and tooling built on them see berth's containers.
	composeProject    = "com.docker.compose.project"
	composeService    = "com.docker.compose.service"
	composeNumber     = "com.docker.compose.container-number"
	composeOneOff     = "com.docker.compose.oneoff"
	composeConfigHash = "com.docker.compose.config-hash"
	composeNetwork    = "com.docker.compose.network"
	composeVolume     = "com.docker.compose.volume"
)

// ContainerName is "<project>-<service>-<slot>", Compose's naming with
// berth's slot as the container number: a server's old and new containers
// run side by side under different slots.
func ContainerName(project, service string, slot int) string {
	return fmt.Sprintf("%s-%s-%d", project, service, slot)
}

func managedLabels(p Placement, service, role string) map[string]string {
	oneOff := "False"
	if p.OneOff {
		oneOff = "True"
	}
	labels := map[string]string{
		LabelEnv:          p.Env,
		LabelService:      service,
		LabelRevision:     p.Revision,
		LabelConfigHash:   p.ConfigHash,
		LabelRole:         role,
		LabelSlot:         strconv.Itoa(p.Slot),
		composeProject:    p.Project,
		composeService:    service,
		composeNumber:     strconv.Itoa(p.Slot),
		composeOneOff:     oneOff,
		composeConfigHash: p.ConfigHash,
	}
	if p.SpecHash != "" {
		labels[LabelSpecHash] = p.SpecHash
	}
	return labels
}
