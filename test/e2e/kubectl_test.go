package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestKubectlCoreScenario drives one server with every installed stock
// kubectl, one version after the other, each in its own namespace.
func TestKubectlCoreScenario(t *testing.T) {
	versions := framework.KubectlVersions()
	if len(versions) == 0 {
		t.Fatalf("no kubectl.1.27 … kubectl.1.33 installed (set %s)", framework.KubectlDirEnv)
	}
	s := env.StartServer(t, framework.ServerOptions{})
	for _, k := range versions {
		t.Run("kubectl-"+k.Version, func(t *testing.T) {
			c := &coreScenario{s: s, k: k, ns: "core-" + strings.ReplaceAll(k.Version, ".", "")}
			c.run(t)
		})
	}
}

// coreScenario is the kubectl workflow run against one kubectl version.
type coreScenario struct {
	s  *framework.Server
	k  framework.Kubectl
	ns string
}

func (c *coreScenario) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return c.s.MustKubectl(t, c.k, append(args, "-n", c.ns)...)
}

func (c *coreScenario) jsonpath(t *testing.T, obj, path string) string {
	t.Helper()
	return c.kubectl(t, "get", obj, "-o", "jsonpath="+path)
}

func (c *coreScenario) run(t *testing.T) {
	steps := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"create", c.create},
		{"apply", c.apply},
		{"get", c.get},
		{"describe", c.describe},
		{"label", c.label},
		{"annotate", c.annotate},
		{"patch", c.patch},
		{"scale", c.scale},
		{"edit", c.edit},
		{"api-resources", c.apiResources},
		{"wait", c.wait},
		{"get-watch", c.getWatch},
		{"delete", c.delete},
		{"delete-namespace", c.deleteNamespace},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.fn) && st.name == "create" {
			t.Fatal("create failed; the later steps depend on it")
		}
	}
}

func (c *coreScenario) create(t *testing.T) {
	out := c.s.MustKubectl(t, c.k, "create", "ns", c.ns)
	sameLines(t, "create ns", out, "namespace/"+c.ns+" created")
	out = c.kubectl(t, "create", "-f", testdata("app.yaml"))
	sameLines(t, "create -f app.yaml", out,
		"deployment.apps/web created", "configmap/web-config created", "service/web created")
	// creating it again is a conflict
	r := c.s.Kubectl(c.k, "create", "-f", testdata("app.yaml"), "-n", c.ns)
	if r.ExitCode == 0 {
		t.Fatalf("second create succeeded: %s", r)
	}
	mustContain(t, "second create", r.Stderr, `deployments.apps "web" already exists`, `configmaps "web-config" already exists`)
}

func (c *coreScenario) apply(t *testing.T) {
	out := c.kubectl(t, "apply", "-f", testdata("apply-v1.yaml"))
	sameLines(t, "first apply", out, "deployment.apps/api created", "configmap/api-config created")
	out = c.kubectl(t, "apply", "-f", testdata("apply-v1.yaml"))
	sameLines(t, "second apply without change", out, "deployment.apps/api unchanged", "configmap/api-config unchanged")
	rv := c.jsonpath(t, "deploy/api", "{.metadata.resourceVersion}")
	out = c.kubectl(t, "apply", "-f", testdata("apply-v1.yaml"))
	sameLines(t, "third apply without change", out, "deployment.apps/api unchanged", "configmap/api-config unchanged")
	if got := c.jsonpath(t, "deploy/api", "{.metadata.resourceVersion}"); got != rv {
		t.Errorf("an unchanged apply changed resourceVersion %s to %s", rv, got)
	}
	out = c.kubectl(t, "apply", "-f", testdata("apply-v2.yaml"))
	sameLines(t, "apply with a change", out, "deployment.apps/api configured", "configmap/api-config configured")
	if got := c.jsonpath(t, "deploy/api", "{.spec.replicas}"); got != "3" {
		t.Errorf("after apply: replicas %q, want 3", got)
	}
	if got := c.jsonpath(t, "deploy/api", "{.spec.template.spec.containers[0].image}"); got != "registry.local/api:2" {
		t.Errorf("after apply: image %q, want registry.local/api:2", got)
	}
	if got := c.jsonpath(t, "cm/api-config", "{.data.mode}"); got != "green" {
		t.Errorf("after apply: data.mode %q, want green", got)
	}
	if got := c.jsonpath(t, "cm/api-config", `{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}`); !strings.Contains(got, `"green"`) {
		t.Errorf("last-applied-configuration %q does not hold the applied data", got)
	}
}

// header checks a table's header row field by field.
func header(t *testing.T, what string, rows [][]string, want string) {
	t.Helper()
	if len(rows) == 0 {
		t.Fatalf("%s: empty output", what)
	}
	if got := strings.Join(rows[0], " "); got != want {
		t.Fatalf("%s: header %q, want %q", what, got, want)
	}
}

func (c *coreScenario) get(t *testing.T) {
	// The deployment controller creates the pods (no node runs them, so
	// none becomes ready): wait until the rollout has created them all.
	poll(t, "deployment web updated", 60*time.Second, func() (bool, string) {
		got := c.jsonpath(t, "deploy/web", "{.status.updatedReplicas}")
		return got == "2", "updatedReplicas=" + got
	})
	rows := tableRows(c.kubectl(t, "get", "deployments"))
	header(t, "get deployments", rows, "NAME READY UP-TO-DATE AVAILABLE AGE")
	if r := rowNamed(rows, "web"); len(r) != 5 || r[1] != "0/2" || r[2] != "2" || r[3] != "0" {
		t.Errorf("get deployments: row web = %q, want [web 0/2 2 0 <age>]", r)
	}
	if r := rowNamed(rows, "api"); len(r) != 5 || r[1] != "0/3" {
		t.Errorf("get deployments: row api = %q, want [api 0/3 0 0 <age>]", r)
	}
	if len(rows) != 3 {
		t.Errorf("get deployments: %d rows, want header + 2: %q", len(rows), rows)
	}

	rows = tableRows(c.kubectl(t, "get", "deployments", "-o", "wide"))
	header(t, "get deployments -o wide", rows, "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR")
	if r := rowNamed(rows, "web"); len(r) != 8 || r[5] != "nginx,sidecar" ||
		r[6] != "registry.local/nginx:1,registry.local/busybox:1" || r[7] != "app=web" {
		t.Errorf("get deployments -o wide: row web = %q", r)
	}

	rows = tableRows(c.kubectl(t, "get", "services"))
	header(t, "get services", rows, "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE")
	if r := rowNamed(rows, "web"); len(r) != 6 || r[1] != "ClusterIP" || r[3] != "<none>" || r[4] != "80/TCP" {
		t.Errorf("get services: row web = %q", r)
	}

	rows = tableRows(c.kubectl(t, "get", "configmaps", "web-config"))
	header(t, "get configmaps", rows, "NAME DATA AGE")
	if r := rowNamed(rows, "web-config"); len(r) != 3 || r[1] != "2" {
		t.Errorf("get configmaps: row web-config = %q", r)
	}

	rows = tableRows(c.s.MustKubectl(t, c.k, "get", "namespace", c.ns))
	header(t, "get namespace", rows, "NAME STATUS AGE")
	if r := rowNamed(rows, c.ns); len(r) != 3 || r[1] != "Active" {
		t.Errorf("get namespace: row = %q", r)
	}

	var d appsv1.Deployment
	if err := json.Unmarshal([]byte(c.kubectl(t, "get", "deploy", "web", "-o", "json")), &d); err != nil {
		t.Fatalf("get -o json: %v", err)
	}
	checkWebDeployment(t, "get -o json", &d, c.ns)

	var dy appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(c.kubectl(t, "get", "deploy", "web", "-o", "yaml")), &dy); err != nil {
		t.Fatalf("get -o yaml: %v", err)
	}
	checkWebDeployment(t, "get -o yaml", &dy, c.ns)
	if dy.ResourceVersion != d.ResourceVersion || dy.UID != d.UID {
		t.Errorf("-o yaml and -o json disagree: rv %s/%s uid %s/%s", dy.ResourceVersion, d.ResourceVersion, dy.UID, d.UID)
	}

	if got := c.jsonpath(t, "deploy/web", "{.spec.replicas}"); got != "2" {
		t.Errorf("jsonpath {.spec.replicas} = %q, want 2", got)
	}
	if got := c.kubectl(t, "get", "deploy", "-o", "name"); strings.TrimSpace(got) != "deployment.apps/api\ndeployment.apps/web" {
		t.Errorf("get -o name = %q", got)
	}
	var list corev1.List
	if err := json.Unmarshal([]byte(c.kubectl(t, "get", "deploy,cm,svc", "-o", "json")), &list); err != nil {
		t.Fatalf("get deploy,cm,svc -o json: %v", err)
	}
	if len(list.Items) < 5 {
		t.Errorf("get deploy,cm,svc -o json: %d items, want at least 5", len(list.Items))
	}
	r := c.s.Kubectl(c.k, "get", "deploy", "missing", "-n", c.ns)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `deployments.apps "missing" not found`) {
		t.Errorf("get of a missing deployment: %s", r)
	}
}

func checkWebDeployment(t *testing.T, what string, d *appsv1.Deployment, ns string) {
	t.Helper()
	if d.Kind != "Deployment" || d.APIVersion != "apps/v1" {
		t.Errorf("%s: kind %q apiVersion %q", what, d.Kind, d.APIVersion)
	}
	if d.Name != "web" || d.Namespace != ns || d.UID == "" || d.ResourceVersion == "" || d.CreationTimestamp.IsZero() {
		t.Errorf("%s: metadata %+v", what, d.ObjectMeta)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("%s: spec.replicas %v, want 2", what, d.Spec.Replicas)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 2 {
		t.Fatalf("%s: %d containers, want 2", what, n)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != "registry.local/nginx:1" {
		t.Errorf("%s: image %q", what, got)
	}
	// defaulting, as upstream does it
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("%s: strategy %q, want the default RollingUpdate", what, d.Spec.Strategy.Type)
	}
	if d.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("%s: restartPolicy %q, want the default Always", what, d.Spec.Template.Spec.RestartPolicy)
	}
}

// squash collapses runs of blanks so describe output can be matched.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

func (c *coreScenario) describe(t *testing.T) {
	out := squash(c.kubectl(t, "describe", "deployment", "web"))
	mustContain(t, "describe deployment", out, "Name: web", "Namespace: "+c.ns, "Selector: app=web",
		"Replicas: 2 desired", "StrategyType: RollingUpdate", "Image: registry.local/nginx:1", "Image: registry.local/busybox:1")
	out = squash(c.kubectl(t, "describe", "configmap", "web-config"))
	mustContain(t, "describe configmap", out, "Name: web-config", "Namespace: "+c.ns, "key1", "value-one", "key2", "value-two")
	out = squash(c.kubectl(t, "describe", "service", "web"))
	mustContain(t, "describe service", out, "Name: web", "Selector: app=web", "Type: ClusterIP", "Port: http 80/TCP")
}

func (c *coreScenario) label(t *testing.T) {
	sameLines(t, "label", c.kubectl(t, "label", "deployment", "web", "tier=frontend"), "deployment.apps/web labeled")
	sameLines(t, "get -l tier=frontend", c.kubectl(t, "get", "deploy", "-l", "tier=frontend", "-o", "name"), "deployment.apps/web")
	sameLines(t, "get -l app", c.kubectl(t, "get", "deploy", "-l", "app", "-o", "name"), "deployment.apps/web", "deployment.apps/api")
	r := c.s.Kubectl(c.k, "label", "deployment", "web", "tier=backend", "-n", c.ns)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "already has a value (frontend)") {
		t.Errorf("relabel without --overwrite: %s", r)
	}
	sameLines(t, "label --overwrite", c.kubectl(t, "label", "deployment", "web", "tier=backend", "--overwrite"), "deployment.apps/web labeled")
	if got := c.jsonpath(t, "deploy/web", "{.metadata.labels.tier}"); got != "backend" {
		t.Errorf("label tier = %q, want backend", got)
	}
	sameLines(t, "unlabel", c.kubectl(t, "label", "deployment", "web", "tier-"), "deployment.apps/web unlabeled")
	if got := c.kubectl(t, "get", "deploy", "-l", "tier", "-o", "name"); strings.TrimSpace(got) != "" {
		t.Errorf("after unlabel, -l tier matched %q", got)
	}
}

func (c *coreScenario) annotate(t *testing.T) {
	// kubectl 1.27 prints the verb ("annotate"), later versions "annotated".
	want := "configmap/web-config annotated"
	if c.k.Version == "1.27" {
		want = "configmap/web-config annotate"
	}
	sameLines(t, "annotate", c.kubectl(t, "annotate", "configmap", "web-config", "note=hello world"), want)
	if got := c.jsonpath(t, "cm/web-config", "{.metadata.annotations.note}"); got != "hello world" {
		t.Errorf("annotation note = %q", got)
	}
}

func (c *coreScenario) patch(t *testing.T) {
	// strategic merge: containers merge by name, the sidecar stays
	out := c.kubectl(t, "patch", "deployment", "web", "--type=strategic",
		"-p", `{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"registry.local/nginx:2"}]}}}}`)
	sameLines(t, "patch --type=strategic", out, "deployment.apps/web patched")
	if got := c.jsonpath(t, "deploy/web", `{range .spec.template.spec.containers[*]}{.name}={.image};{end}`); got != "nginx=registry.local/nginx:2;sidecar=registry.local/busybox:1;" {
		t.Errorf("after strategic patch: containers %q", got)
	}
	// merge: maps merge
	sameLines(t, "patch --type=merge", c.kubectl(t, "patch", "configmap", "web-config", "--type=merge", "-p", `{"data":{"extra":"1"}}`),
		"configmap/web-config patched")
	if got := c.jsonpath(t, "cm/web-config", "{.data.key1},{.data.key2},{.data.extra}"); got != "value-one,value-two,1" {
		t.Errorf("after merge patch: data %q", got)
	}
	// json patch
	sameLines(t, "patch --type=json", c.kubectl(t, "patch", "service", "web", "--type=json",
		"-p", `[{"op":"add","path":"/metadata/labels/patched","value":"json"},{"op":"replace","path":"/spec/ports/0/port","value":8080}]`),
		"service/web patched")
	if got := c.jsonpath(t, "svc/web", "{.metadata.labels.patched} {.spec.ports[0].port}"); got != "json 8080" {
		t.Errorf("after json patch: %q", got)
	}
	// a json patch whose test fails changes nothing
	rv := c.jsonpath(t, "svc/web", "{.metadata.resourceVersion}")
	r := c.s.Kubectl(c.k, "patch", "service", "web", "-n", c.ns, "--type=json",
		"-p", `[{"op":"test","path":"/metadata/labels/patched","value":"nope"},{"op":"remove","path":"/metadata/labels/patched"}]`)
	if r.ExitCode == 0 {
		t.Errorf("a json patch with a failing test op succeeded: %s", r)
	}
	if got := c.jsonpath(t, "svc/web", "{.metadata.resourceVersion}"); got != rv {
		t.Errorf("a failed patch changed resourceVersion %s to %s", rv, got)
	}
}

func (c *coreScenario) scale(t *testing.T) {
	sameLines(t, "scale", c.kubectl(t, "scale", "deployment", "web", "--replicas=5"), "deployment.apps/web scaled")
	if got := c.jsonpath(t, "deploy/web", "{.spec.replicas}"); got != "5" {
		t.Errorf("after scale: spec.replicas = %q, want 5", got)
	}
	r := c.s.Kubectl(c.k, "scale", "deployment", "web", "--replicas=6", "--current-replicas=2", "-n", c.ns)
	if r.ExitCode == 0 {
		t.Errorf("scale with a wrong --current-replicas succeeded: %s", r)
	}
	if got := c.jsonpath(t, "deploy/web", "{.spec.replicas}"); got != "5" {
		t.Errorf("after a refused scale: spec.replicas = %q, want 5", got)
	}
}

func (c *coreScenario) edit(t *testing.T) {
	editor := writeFile(t, "editor.sh", "#!/bin/sh\nexec sed -i 's/value-one/value-edited/' \"$1\"\n", 0o755)
	r := c.s.KubectlWith(c.k, framework.Cmd{Env: []string{"KUBE_EDITOR=" + editor, "EDITOR=" + editor}},
		"edit", "configmap", "web-config", "-n", c.ns)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl edit: %s", r)
	}
	sameLines(t, "edit", r.Stdout, "configmap/web-config edited")
	if got := c.jsonpath(t, "cm/web-config", "{.data.key1}"); got != "value-edited" {
		t.Errorf("after edit: data.key1 = %q, want value-edited", got)
	}
}

func (c *coreScenario) apiResources(t *testing.T) {
	rows := tableRows(c.s.MustKubectl(t, c.k, "api-resources"))
	header(t, "api-resources", rows, "NAME SHORTNAMES APIVERSION NAMESPACED KIND")
	want := [][]string{
		{"pods", "po", "v1", "true", "Pod"},
		{"namespaces", "ns", "v1", "false", "Namespace"},
		{"configmaps", "cm", "v1", "true", "ConfigMap"},
		{"services", "svc", "v1", "true", "Service"},
		{"nodes", "no", "v1", "false", "Node"},
		{"secrets", "v1", "true", "Secret"},
		{"deployments", "deploy", "apps/v1", "true", "Deployment"},
		{"replicasets", "rs", "apps/v1", "true", "ReplicaSet"},
		{"statefulsets", "sts", "apps/v1", "true", "StatefulSet"},
		{"jobs", "batch/v1", "true", "Job"},
		{"leases", "coordination.k8s.io/v1", "true", "Lease"},
	}
	for _, w := range want {
		if got := rowNamed(rows, w[0]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("api-resources: row %q, want %q", got, w)
		}
	}
	out := c.s.MustKubectl(t, c.k, "api-resources", "--api-group=apps", "-o", "name")
	mustContain(t, "api-resources --api-group=apps", out, "deployments.apps", "replicasets.apps", "daemonsets.apps", "statefulsets.apps")
	if strings.Contains(out, "configmaps") {
		t.Errorf("api-resources --api-group=apps lists core resources:\n%s", out)
	}
}

func (c *coreScenario) wait(t *testing.T) {
	sameLines(t, "create pod", c.kubectl(t, "create", "-f", testdata("pod.yaml")), "pod/waiter created")
	rows := tableRows(c.kubectl(t, "get", "pods"))
	header(t, "get pods", rows, "NAME READY STATUS RESTARTS AGE")
	if r := rowNamed(rows, "waiter"); len(r) != 5 || r[1] != "0/1" || r[2] != "Pending" || r[3] != "0" {
		t.Errorf("get pods: row %q, want [waiter 0/1 Pending 0 <age>]", r)
	}
	rows = tableRows(c.kubectl(t, "get", "pods", "-o", "wide"))
	header(t, "get pods -o wide", rows, "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.s.KubectlCommand(ctx, c.k, "wait", "--for=condition=Ready", "pod/waiter", "-n", c.ns, "--timeout=90s")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(time.Second) // let kubectl wait reach its watch; the test holds either way
	select {
	case err := <-done:
		t.Fatalf("kubectl wait returned before the pod was Ready: %v\n%s%s", err, out.String(), errb.String())
	default:
	}
	patched := c.kubectl(t, "patch", "pod", "waiter", "--subresource=status", "--type=merge",
		"-p", `{"status":{"conditions":[{"type":"Ready","status":"True"}]}}`)
	sameLines(t, "patch --subresource=status", patched, "pod/waiter patched")
	if err := <-done; err != nil {
		t.Fatalf("kubectl wait: %v\n%s%s", err, out.String(), errb.String())
	}
	sameLines(t, "kubectl wait", out.String(), "pod/waiter condition met")
	// the status subresource ignores spec changes, and the main resource ignores status
	c.kubectl(t, "patch", "pod", "waiter", "--type=merge", "-p", `{"status":{"conditions":[{"type":"Ready","status":"False"}]}}`)
	if got := c.jsonpath(t, "pod/waiter", `{.status.conditions[?(@.type=="Ready")].status}`); got != "True" {
		t.Errorf("a patch of the main resource changed status: Ready=%q", got)
	}
}

func (c *coreScenario) getWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.s.KubectlCommand(ctx, c.k, "get", "configmap", "web-config", "-n", c.ns, "-w")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	rowsc := make(chan []string, 16)
	go func() {
		defer close(rowsc)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			rowsc <- strings.Fields(sc.Text())
		}
	}()
	next := func(what string) []string {
		select {
		case r, ok := <-rowsc:
			if !ok {
				t.Fatalf("get -w ended while waiting for %s: %s", what, errb.String())
			}
			return r
		case <-time.After(time.Minute):
			t.Fatalf("get -w: no %s within a minute: %s", what, errb.String())
		}
		return nil
	}
	if h := next("header"); strings.Join(h, " ") != "NAME DATA AGE" {
		t.Fatalf("get -w header %q", h)
	}
	first := next("first row")
	if len(first) != 3 || first[0] != "web-config" || first[1] != "3" {
		t.Fatalf("get -w first row %q, want [web-config 3 <age>]", first)
	}
	c.kubectl(t, "patch", "configmap", "web-config", "--type=merge", "-p", `{"data":{"watched":"yes"}}`)
	if r := next("the change"); len(r) != 3 || r[0] != "web-config" || r[1] != "4" {
		t.Fatalf("get -w change row %q, want [web-config 4 <age>]", r)
	}
}

func (c *coreScenario) delete(t *testing.T) {
	mustContain(t, "delete service", c.kubectl(t, "delete", "service", "web"), `service "web" deleted`)
	r := c.s.Kubectl(c.k, "get", "service", "web", "-n", c.ns)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `services "web" not found`) {
		t.Errorf("get after delete: %s", r)
	}
	mustContain(t, "delete deployment", c.kubectl(t, "delete", "deployment", "api"), `deployment.apps "api" deleted`)
	sameLines(t, "deployments left", c.kubectl(t, "get", "deploy", "-o", "name"), "deployment.apps/web")
}

func (c *coreScenario) deleteNamespace(t *testing.T) {
	sameLines(t, "create held configmap", c.kubectl(t, "create", "-f", testdata("held-configmap.yaml")), "configmap/held created")
	out := c.s.MustKubectl(t, c.k, "delete", "namespace", c.ns, "--wait=false")
	mustContain(t, "delete namespace", out, fmt.Sprintf(`namespace "%s" deleted`, c.ns))
	poll(t, "namespace Terminating", time.Minute, func() (bool, string) {
		r := c.s.Kubectl(c.k, "get", "namespace", c.ns, "-o", "jsonpath={.status.phase}")
		return r.ExitCode == 0 && r.Stdout == "Terminating", r.String()
	})
	r := c.s.KubectlWith(c.k, framework.Cmd{Stdin: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n"}, "create", "-f", "-", "-n", c.ns)
	if r.ExitCode == 0 {
		t.Errorf("create in a terminating namespace succeeded: %s", r)
	}
	mustContain(t, "create in a terminating namespace", r.Stderr, "Error from server (Forbidden)",
		fmt.Sprintf(`configmaps "late" is forbidden: unable to create new content in namespace %s because it is being terminated`, c.ns))
	// everything but the held configmap goes; the held one waits for its finalizer
	poll(t, "namespace contents deleted", time.Minute, func() (bool, string) {
		r := c.s.Kubectl(c.k, "get", "deploy,svc,pods,cm", "-n", c.ns, "-o", "name")
		return r.ExitCode == 0 && strings.TrimSpace(r.Stdout) == "configmap/held", r.String()
	})
	if got := c.jsonpath(t, "cm/held", "{.metadata.deletionTimestamp}"); got == "" {
		t.Errorf("held configmap has no deletionTimestamp while its namespace terminates")
	}
	c.kubectl(t, "patch", "configmap", "held", "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`)
	poll(t, "namespace gone", time.Minute, func() (bool, string) {
		r := c.s.Kubectl(c.k, "get", "namespace", c.ns)
		return r.ExitCode != 0 && strings.Contains(r.Stderr, fmt.Sprintf(`namespaces "%s" not found`, c.ns)), r.String()
	})
}
