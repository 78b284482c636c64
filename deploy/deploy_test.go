package deploy

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keeldb/keel/config"
)

// servedProbes are the paths keel serves for probes (api/http.go,
// api/probes.go).
var servedProbes = []string{"/health", "/livez", "/readyz"}

type probe struct {
	HTTPGet *struct {
		Host   string `json:"host"`
		Path   string `json:"path"`
		Port   int    `json:"port"`
		Scheme string `json:"scheme"`
	} `json:"httpGet"`
	FailureThreshold int `json:"failureThreshold"`
}

type pod struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		HostNetwork       bool   `json:"hostNetwork"`
		PriorityClassName string `json:"priorityClassName"`
		Containers        []struct {
			Command        []string `json:"command"`
			LivenessProbe  *probe   `json:"livenessProbe"`
			ReadinessProbe *probe   `json:"readinessProbe"`
			StartupProbe   *probe   `json:"startupProbe"`
			VolumeMounts   []struct {
				MountPath string `json:"mountPath"`
				Name      string `json:"name"`
			} `json:"volumeMounts"`
		} `json:"containers"`
		Volumes []struct {
			Name     string `json:"name"`
			HostPath struct {
				Path string `json:"path"`
			} `json:"hostPath"`
		} `json:"volumes"`
	} `json:"spec"`
}

// parseFlags parses a keel command line and fails on any error.
func parseFlags(t *testing.T, args []string) *config.Config {
	t.Helper()
	cfg, action, err := config.Parse(args, nil)
	if err != nil || action != config.ActionRun {
		t.Fatalf("keel %q: %v (action %v)", args, err, action)
	}
	for _, n := range cfg.Notices {
		t.Logf("notice: %s %s=%s", n.Msg, n.Key, n.Value)
	}
	return cfg
}

func TestStaticPodManifest(t *testing.T) {
	b, err := os.ReadFile("keel-static-pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p pod
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if p.APIVersion != "v1" || p.Kind != "Pod" || p.Metadata.Namespace != "kube-system" || !p.Spec.HostNetwork ||
		p.Spec.PriorityClassName != "system-node-critical" || len(p.Spec.Containers) != 1 {
		t.Fatalf("not a kube-system host-network static pod: %+v", p)
	}
	c := p.Spec.Containers[0]
	if len(c.Command) < 2 || filepath.Base(c.Command[0]) != "keel" {
		t.Fatalf("command %q does not run keel", c.Command)
	}
	cfg := parseFlags(t, c.Command[1:])
	for _, n := range cfg.Notices {
		t.Errorf("the manifest uses a flag keel only warns about: %+v", n)
	}
	var metricsURLs []string
	for _, a := range c.Command[1:] {
		if v, ok := strings.CutPrefix(a, "--listen-metrics-urls="); ok {
			metricsURLs = strings.Split(v, ",")
		}
	}
	// Probes: kubelet has no client certificate, so each must hit a plain
	// HTTP loopback URL keel listens on, at a path keel serves.
	want := map[string]*probe{"/livez": c.LivenessProbe, "/readyz": c.ReadinessProbe}
	for path, pr := range want {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != path {
			t.Errorf("probe for %s: %+v", path, pr)
		}
	}
	for name, pr := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			continue
		}
		g := pr.HTTPGet
		if !slices.Contains(servedProbes, g.Path) {
			t.Errorf("%s probe path %s is not served", name, g.Path)
		}
		target := "http://" + g.Host + ":" + strconv.Itoa(g.Port)
		listened := slices.Contains(metricsURLs, target)
		for _, u := range cfg.ListenClientURLs {
			listened = listened || u.String() == target
		}
		if g.Scheme != "HTTP" || !listened {
			t.Errorf("%s probe targets %s (%s), not a plain HTTP URL keel listens on (client %v, metrics %v)", name, target, g.Scheme, cfg.ListenClientURLs, metricsURLs)
		}
	}
	// The data dir is on the host.
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range p.Spec.Volumes {
			if m.Name == v.Name && m.MountPath == cfg.DataDir && v.HostPath.Path != "" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--data-dir %s is not a hostPath volume", cfg.DataDir)
	}
	if !cfg.ClientTLS.ClientCertAuth || !cfg.PeerTLS.ClientCertAuth || cfg.ClientTLS.Empty() || cfg.PeerTLS.Empty() {
		t.Errorf("the manifest does not secure both ports as kubeadm does")
	}
}

// unitExecStart returns the arguments of the unit's ExecStart, with
// systemd's line continuations joined.
func unitExecStart(t *testing.T, path string) (args []string, service map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	service = map[string]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<16), 1<<16)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("bad line %q", line)
			}
			service[k] = v
		}
	}
	return strings.Fields(service["ExecStart"]), service
}

func TestSystemdUnit(t *testing.T) {
	args, service := unitExecStart(t, "keel.service")
	if len(args) < 2 || args[0] != "/usr/local/bin/keel" {
		t.Fatalf("ExecStart %q", args)
	}
	cfg := parseFlags(t, args[1:])
	if len(cfg.Notices) != 0 {
		t.Errorf("ExecStart uses flags keel only warns about: %+v", cfg.Notices)
	}
	// keel sends READY=1 (cmd/keel/systemd.go), so the unit waits for it.
	if service["Type"] != "notify" {
		t.Errorf("Type=%s, want notify", service["Type"])
	}
	if !strings.HasPrefix(cfg.DataDir, "/var/lib/"+service["StateDirectory"]+"/") {
		t.Errorf("data dir %s is not under StateDirectory=%s", cfg.DataDir, service["StateDirectory"])
	}
	for _, k := range []string{"Restart", "LimitNOFILE", "User"} {
		if service[k] == "" {
			t.Errorf("no %s=", k)
		}
	}
}

func TestConfigFileSample(t *testing.T) {
	cfg := parseFlags(t, []string{"--config-file", "keel.conf.yml"})
	if len(cfg.Notices) != 0 {
		t.Errorf("notices: %+v", cfg.Notices)
	}
	if cfg.Name != "node1" || cfg.ClientTLS.Empty() || !cfg.PeerTLS.ClientCertAuth || !cfg.InitialCorruptCheck {
		t.Errorf("config %+v", cfg)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 || froms[len(froms)-1][1] != "scratch" {
		t.Fatalf("the final stage is not FROM scratch: %v", froms)
	}
	// The builder's Go is at least go.mod's.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goLine == nil || !strings.HasPrefix(froms[0][1], "golang:"+string(goLine[1])) {
		t.Errorf("builder %s does not match go.mod's go %s", froms[0][1], goLine[1])
	}
	for _, cmd := range []string{"./cmd/keel", "./cmd/keelctl"} {
		if !regexp.MustCompile(`CGO_ENABLED=0 go build [^\n]*` + regexp.QuoteMeta(cmd) + `\b`).MatchString(text) {
			t.Errorf("%s is not built with CGO_ENABLED=0", cmd)
		}
	}
	if !strings.Contains(text, `ENTRYPOINT ["/usr/local/bin/keel"]`) {
		t.Errorf("no keel entrypoint")
	}
}

// TestStaticBinary builds keel as the Dockerfile does and checks that the
// result needs no dynamic loader, so it runs on scratch.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	out := filepath.Join(t.TempDir(), "keel")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/keel")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	if v, err := exec.Command(out, "--version").Output(); err != nil || !strings.Contains(string(v), "etcd API Version") {
		t.Errorf("keel --version: %v %q", err, v)
	}
}
