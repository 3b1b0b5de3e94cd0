package envs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-shellwords"
	"github.com/robfig/cron/v3"

	"berth.dev/berth/imagesig"
)

// extKey is the Compose extension field berth's settings live in, so that a
// config file stays valid for `docker compose config`.
const extKey = "x-berth"

var (
	varNameRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretPathRe  = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
	secretFieldRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	upstreamRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// Names of bounded length are checked as len(name) <= N beside an
	// unbounded pattern: a bounded repetition ({0,99}) compiles to one
	// instruction per repeat, 42 KB of heap for this one regexp (120 KB for
	// the three of envs), kept for the process's life.
	backendRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// ValidBackendName reports whether name may name an HAProxy backend: it
// names the backend's file in the servers directory and goes into runtime
// API commands, so it is held to letters, digits, '_', '.' and '-'
// (lb.ValidBackendName is this rule).
func ValidBackendName(name string) bool { return len(name) <= 100 && backendRe.MatchString(name) }

func itoa(n int) string { return strconv.Itoa(n) }

// secretFileRe is a file name under /run/secrets (at most 128 bytes:
// validSecretFile).
var secretFileRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func validSecretFile(name string) bool { return len(name) <= 128 && secretFileRe.MatchString(name) }

// parseServiceSpec decodes a service's x-berth block.
func parseServiceSpec(v any, report func(field, msg, hint string)) ServiceSpec {
	spec := ServiceSpec{Role: RoleWorker}
	m, ok := asMap(v, extKey, report)
	if !ok {
		return spec
	}
	fields(m, serviceKeys, report, extKey)
	if r, ok := m["role"]; ok {
		if s, ok := asEnum(r, extKey+".role", "role", []string{"migrate", "cli", "worker", "server"}, report); ok {
			spec.Role = Role(s)
		}
	}
	if p, ok := m["port"]; ok {
		spec.Port, _ = asIntIn(p, extKey+".port", 1, 65535, func(n int) (string, string) {
			return fmt.Sprintf("port %d out of range", n), "a container port from 1 to 65535"
		}, report)
	}
	if s, ok := m["stop_first"]; ok {
		spec.StopFirst = asBool(s, extKey+".stop_first", report)
	}
	if lm, ok := asMap(m["lb"], extKey+".lb", report); ok {
		spec.LB = parseLB(lm, report)
	}
	if w, ok := m["watch"]; ok {
		spec.Watch, spec.watchSet = asWatch(w, extKey+".watch", report), true
	}
	if mg, ok := m["migration"]; ok {
		spec.Migration = parseMigration(mg, spec.Role, report)
	}
	spec.Secrets = secretRefs(m, "secrets", varNameRe.MatchString, "a valid environment variable name", "letters, digits and _, not starting with a digit", report)
	spec.SecretFiles = secretRefs(m, "secret_files", validSecretFile, "a valid file name", "letters, digits, '.', '_' and '-', no '/'", report)
	return spec
}

// secretRefs decodes a map of names (valid ones) to Vault references.
func secretRefs(m map[string]any, key string, valid func(string) bool, what, hint string, report func(field, msg, hint string)) map[string]SecretRef {
	sm, ok := asMap(m[key], extKey+"."+key, report)
	if !ok {
		return nil
	}
	out := map[string]SecretRef{}
	for _, name := range slices.Sorted(maps.Keys(sm)) {
		field := extKey + "." + key + "." + name
		if !valid(name) {
			report(field, fmt.Sprintf("%q is not %s", name, what), hint)
			continue
		}
		s, ok := asString(sm[name], field, report)
		if !ok {
			continue
		}
		ref, err := ParseSecretRef(s)
		if err != nil {
			report(field, err.Error(), `write "path#field" or "path#field@version", e.g. "kv/journal/db#password", or "sops:FILE#KEY"`)
			continue
		}
		out[name] = ref
	}
	return out
}

// ParseSecretRef parses "path#field" or "path#field@version" (Vault), or
// "sops:FILE#KEY".
func ParseSecretRef(s string) (SecretRef, error) {
	if strings.HasPrefix(s, SOPSPrefix) {
		return parseSOPSRef(s)
	}
	path, rest, ok := strings.Cut(s, "#")
	if !ok {
		return SecretRef{}, fmt.Errorf("secret reference %q has no #field", s)
	}
	field, ver, hasVer := strings.Cut(rest, "@")
	ref := SecretRef{Path: path, Field: field}
	if !secretPathRe.MatchString(path) || strings.Contains("/"+path+"/", "/../") || strings.Contains("/"+path+"/", "/./") {
		return SecretRef{}, fmt.Errorf("secret reference %q has a malformed path", s)
	}
	if !secretFieldRe.MatchString(field) {
		return SecretRef{}, fmt.Errorf("secret reference %q has a malformed field", s)
	}
	if hasVer {
		n, err := strconv.Atoi(ver)
		if err != nil || n < 1 {
			return SecretRef{}, fmt.Errorf("secret reference %q has a malformed @version", s)
		}
		ref.Version = n
	}
	return ref, nil
}

var topKeys = []string{"require_digests", "lb", "watch", "jobs", "rollout", "promote", "images"}

// topSpec is the decoded top-level x-berth block.
type topSpec struct {
	requireDigests bool
	lb             *LBSpec
	watch          time.Duration
	jobs           map[string]JobSpec
	rollout        *Rollout
	promote        *PromoteSpec
	images         []imagesig.Rule
}

// maxWatch bounds x-berth.watch: the old servers run beside the new ones
// for that long, and the pass holds the env's next deploy meanwhile.
const maxWatch = time.Hour

func asWatch(v any, field string, report func(field, msg, hint string)) time.Duration {
	d := asDuration(v, field, report)
	if d > maxWatch {
		report(field, fmt.Sprintf("%s is longer than berth watches a release (%s)", d, maxWatch), "watch for minutes: the env's next deploy waits for the watch to end")
		return 0
	}
	return d
}

func parseTopSpec(v any, name string, report func(field, msg, hint string)) topSpec {
	spec := topSpec{requireDigests: true}
	m, ok := asMap(v, extKey, report)
	if !ok {
		return spec
	}
	fields(m, topKeys, report, extKey)
	if r, ok := m["require_digests"]; ok {
		spec.requireDigests = asBool(r, extKey+".require_digests", report)
	}
	if lm, ok := asMap(m["lb"], extKey+".lb", report); ok {
		spec.lb = parseLB(lm, report)
	}
	if w, ok := m["watch"]; ok {
		spec.watch = asWatch(w, extKey+".watch", report)
	}
	if r, ok := m["rollout"]; ok {
		spec.rollout = parseRollout(r, report)
	}
	if p, ok := m["promote"]; ok {
		spec.promote = parsePromote(p, name, report)
	}
	if im, ok := m["images"]; ok {
		spec.images = parseImages(im, report)
	}
	if jm, ok := asMap(m["jobs"], extKey+".jobs", report); ok {
		spec.jobs = map[string]JobSpec{}
		for _, name := range slices.Sorted(maps.Keys(jm)) {
			spec.jobs[name] = parseJob(name, jm[name], report)
		}
	}
	return spec
}

// parseLB decodes an x-berth.lb block (top level or a server's): nginx
// names an upstream, haproxy a backend.
func parseLB(m map[string]any, report func(field, msg, hint string)) *LBSpec {
	const f = extKey + ".lb"
	lb := &LBSpec{}
	if v, ok := m["type"]; ok {
		lb.Type, _ = asString(v, f+".type", report)
	}
	switch lb.Type {
	case "nginx":
		fields(m, []string{"type", "upstream", "file"}, report, f)
	case "haproxy":
		fields(m, []string{"type", "backend"}, report, f)
		if v, ok := m["backend"]; ok {
			lb.Backend, _ = asString(v, f+".backend", report)
		}
		if !ValidBackendName(lb.Backend) {
			report(f+".backend", fmt.Sprintf("%q is not a valid backend name", lb.Backend), "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters")
		}
		return lb
	case "":
		report(f+".type", "missing", `set type: nginx (with upstream: NAME) or type: haproxy (with backend: NAME)`)
		return lb
	default:
		report(f+".type", fmt.Sprintf("unsupported load balancer %q", lb.Type), "berth supports nginx and haproxy")
		return lb
	}
	if v, ok := m["upstream"]; ok {
		lb.Upstream, _ = asString(v, f+".upstream", report)
	}
	if !upstreamRe.MatchString(lb.Upstream) {
		report(f+".upstream", fmt.Sprintf("%q is not a valid upstream name", lb.Upstream), "letters, digits, '.', '_' and '-'")
	}
	if v, ok := m["file"]; ok {
		// Optional: berth names the file (checkLB); an old repo's own
		// name is kept where it fits the host's directory.
		lb.File, _ = asString(v, f+".file", report)
		if !strings.HasPrefix(lb.File, "/") || !strings.HasSuffix(lb.File, ".conf") {
			report(f+".file", fmt.Sprintf("%q must be an absolute path ending in .conf", lb.File), "leave file: out; berth names the file")
		}
	}
	return lb
}

var jobKeys = []string{"schedule", "timezone", "service", "image", "environment", "command", "timeout", "concurrency", "history", "missed", "jitter", "notify", "run_on", "starting_deadline"}

// cronParser accepts 5 fields, an optional leading seconds field, and
// descriptors such as @daily and @every 2s.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func parseJob(name string, v any, report func(field, msg, hint string)) JobSpec {
	f := extKey + ".jobs." + name
	job := JobSpec{Name: name, Concurrency: ConcurrencyForbid, History: 50, Missed: "skip", Notify: "failure"}
	m, ok := asMap(v, f, report)
	if !ok {
		return job
	}
	fields(m, jobKeys, report, f)
	if s, ok := asString(m["schedule"], f+".schedule", report); ok {
		job.Schedule = s
		if _, err := cronParser.Parse(s); err != nil {
			report(f+".schedule", fmt.Sprintf("invalid schedule %q: %v", s, err), `5 cron fields ("0 3 * * *"), 6 with seconds, or @daily / @every 10m`)
		}
	}
	if tz, ok := m["timezone"]; ok {
		if s, ok := asString(tz, f+".timezone", report); ok {
			if _, err := time.LoadLocation(s); err != nil || s == "" || strings.EqualFold(s, "local") {
				report(f+".timezone", fmt.Sprintf("unknown time zone %q", s), "an IANA name such as Europe/London or UTC")
			} else {
				job.Timezone = s
			}
		}
	}
	if s, ok := m["service"]; ok {
		job.Service, _ = asString(s, f+".service", report)
	}
	if s, ok := m["image"]; ok {
		job.Image, _ = asString(s, f+".image", report)
	}
	if job.Service == "" && job.Image == "" {
		report(f, "names neither a service nor an image", "set service: to inherit a service's image, env and secrets, or image:")
	}
	if c, ok := m["command"]; ok {
		switch x := c.(type) {
		case string:
			words, err := shellwords.Parse(x)
			if err != nil {
				report(f+".command", fmt.Sprintf("cannot split %q: %v", x, err), "write the command as a list")
			}
			job.Command = words
		case []any:
			job.Command = stringList(x)
			if len(job.Command) != len(x) {
				report(f+".command", "must be a list of strings", "")
			}
		default:
			report(f+".command", "must be a string or a list of strings", "")
		}
	}
	if em, ok := asMap(m["environment"], f+".environment", report); ok {
		job.Environment = map[string]string{}
		for k, v := range em {
			job.Environment[k] = fmt.Sprint(v)
		}
	}
	if t, ok := m["timeout"]; ok {
		job.Timeout = asDuration(t, f+".timeout", report)
	}
	if j, ok := m["jitter"]; ok {
		job.Jitter = asDuration(j, f+".jitter", report)
	}
	if c, ok := m["concurrency"]; ok {
		if s, ok := asEnum(c, f+".concurrency", "policy", []string{"forbid", "allow", "replace"}, report); ok {
			job.Concurrency = Concurrency(s)
		}
	}
	if h, ok := m["history"]; ok {
		if n, ok := asIntIn(h, f+".history", 1, maxJobHistory, func(n int) (string, string) {
			return fmt.Sprintf("%d runs is out of range", n), fmt.Sprintf("keep from 1 to %d runs", maxJobHistory)
		}, report); ok {
			job.History = n
		}
	}
	if mv, ok := m["missed"]; ok {
		if s, ok := asEnum(mv, f+".missed", "policy", []string{"skip", "run_once"}, report); ok {
			job.Missed = s
		}
	}
	parseJobFleet(m, f, &job, report)
	if n, ok := m["notify"]; ok {
		if s, ok := asEnum(n, f+".notify", "setting", []string{"failure", "always", "never"}, report); ok {
			job.Notify = s
		}
	}
	return job
}
