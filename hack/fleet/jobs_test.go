package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// decodeJobs decodes a YAML stream strictly (an unknown or misspelled
// field is an error) into Kubernetes' own Job type.
func decodeJobs(t *testing.T, stream []byte) []batchv1.Job {
	t.Helper()
	var out []batchv1.Job
	for _, doc := range regexp.MustCompile(`(?m)^---\n`).Split(string(stream), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var j batchv1.Job
		if err := yaml.UnmarshalStrict([]byte(doc), &j); err != nil {
			t.Fatalf("not a Job by k8s.io/api's types: %v\n%s", err, doc)
		}
		out = append(out, j)
	}
	return out
}

// TestJobsDecodeStrictly: the generator's Jobs, for images on a node's
// directory (snapshot-out) and on a PVC (in place), decode strictly as
// Jobs, one per image, and say what docs/fleet.md says they do.
func TestJobsDecodeStrictly(t *testing.T) {
	images := []string{"vms/web-01.qcow2", "vms/db 02.qcow2", "other/web-01.qcow2"}
	var out bytes.Buffer
	if err := run([]string{"-list", "-", "-image", "nixrescue:v0.5.0", "-hostpath", "/srv/images", "-node", "worker-1"},
		strings.NewReader(strings.Join(images, "\n")+"\n"), &out); err != nil {
		t.Fatal(err)
	}
	jobs := decodeJobs(t, out.Bytes())
	if len(jobs) != len(images) {
		t.Fatalf("%d Jobs for %d images", len(jobs), len(images))
	}
	names := map[string]bool{}
	for i, j := range jobs {
		checkJob(t, j, images[i])
		names[j.Name] = true
		spec := j.Spec.Template.Spec
		if spec.NodeSelector["kubernetes.io/hostname"] != "worker-1" || spec.Volumes[0].HostPath == nil || spec.Volumes[0].HostPath.Path != "/srv/images" {
			t.Errorf("%s: not pinned to worker-1's /srv/images: %+v %+v", j.Name, spec.NodeSelector, spec.Volumes[0])
		}
		overlay := "/images/" + strings.TrimSuffix(images[i], ".qcow2") + ".repaired-$(POD_NAME).qcow2"
		if !strings.Contains(strings.Join(spec.InitContainers[0].Args, " "), "--snapshot --snapshot-out "+overlay) || spec.Containers[0].Args[1] != overlay {
			t.Errorf("%s: the rebuild should write %s and the boot test boot it: %q %q", j.Name, overlay, spec.InitContainers[0].Args, spec.Containers[0].Args)
		}
	}
	if len(names) != len(images) {
		t.Errorf("two images share a Job name: %v", names)
	}
	out.Reset()
	if err := run([]string{"-list", "-", "-image", "nixrescue:v0.5.0", "-pvc", "images", "-in-place", "-backoff", "2", "-deadline", "2h"},
		strings.NewReader("vms/web-01.qcow2\n"), &out); err != nil {
		t.Fatal(err)
	}
	j := decodeJobs(t, out.Bytes())[0]
	checkJob(t, j, "vms/web-01.qcow2")
	spec := j.Spec.Template.Spec
	if spec.Volumes[0].PersistentVolumeClaim == nil || spec.Volumes[0].PersistentVolumeClaim.ClaimName != "images" || spec.NodeSelector != nil {
		t.Errorf("the PVC's volume: %+v, node selector %v", spec.Volumes[0], spec.NodeSelector)
	}
	if strings.Contains(strings.Join(spec.InitContainers[0].Args, " "), "--snapshot") || spec.Containers[0].Args[1] != "/images/vms/web-01.qcow2" {
		t.Errorf("in place: the image itself is rebuilt and booted: %q %q", spec.InitContainers[0].Args, spec.Containers[0].Args)
	}
	if *j.Spec.BackoffLimit != 2 || *j.Spec.ActiveDeadlineSeconds != 7200 {
		t.Errorf("backoffLimit %d, activeDeadlineSeconds %d; want 2, 7200", *j.Spec.BackoffLimit, *j.Spec.ActiveDeadlineSeconds)
	}
}

// checkJob checks what every Job must be.
func checkJob(t *testing.T, j batchv1.Job, image string) {
	t.Helper()
	if errs := validation.IsDNS1123Label(j.Name); len(errs) > 0 {
		t.Errorf("Job name %q: %v", j.Name, errs)
	}
	spec := j.Spec.Template.Spec
	if j.Annotations["nixrescue.io/image"] != image || spec.RestartPolicy != corev1.RestartPolicyNever ||
		len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("%s: image %q, restart %s, %d init containers, %d containers", j.Name, j.Annotations["nixrescue.io/image"], spec.RestartPolicy, len(spec.InitContainers), len(spec.Containers))
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			t.Errorf("%s/%s is not privileged", j.Name, c.Name)
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		for _, p := range []string{"/dev", "/run/nixrescue", "/var/log/nixrescue", "/images"} {
			if mounts[p] == "" {
				t.Errorf("%s/%s does not mount %s", j.Name, c.Name, p)
			}
		}
		if a := strings.Join(c.Args, " "); !strings.Contains(a, "--json") || !strings.Contains(a, "--audit-log /var/log/nixrescue/audit.log") {
			t.Errorf("%s/%s: %s", j.Name, c.Name, a)
		}
	}
	if spec.InitContainers[0].Args[0] != "rebuild" || spec.InitContainers[0].Args[1] != "/images/"+image || spec.Containers[0].Args[0] != "boot-test" {
		t.Errorf("%s: rebuild then boot-test of the image: %q %q", j.Name, spec.InitContainers[0].Args, spec.Containers[0].Args)
	}
	if p := j.Spec.PodFailurePolicy; p == nil || len(p.Rules) != 2 || p.Rules[0].OnExitCodes.Values[0] != 125 {
		t.Errorf("%s: the pod failure policy should fail the Job on nixrescue's 125: %+v", j.Name, p)
	}
}

// TestFleetDocManifests: every YAML manifest of docs/fleet.md decodes
// strictly with k8s.io/api's types (a Job, or the PersistentVolumeClaim
// it uses).
func TestFleetDocManifests(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "fleet.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("docs/fleet.md has no yaml block")
	}
	jobs := 0
	for _, b := range blocks {
		var kind struct{ Kind string }
		if err := yaml.Unmarshal(b[1], &kind); err != nil {
			t.Fatalf("%v\n%s", err, b[1])
		}
		switch kind.Kind {
		case "Job":
			jobs++
			checkJob(t, decodeJobs(t, b[1])[0], "vms/web-01.qcow2")
		case "PersistentVolumeClaim":
			var pvc corev1.PersistentVolumeClaim
			if err := yaml.UnmarshalStrict(b[1], &pvc); err != nil {
				t.Errorf("not a PersistentVolumeClaim: %v\n%s", err, b[1])
			}
		default:
			t.Errorf("docs/fleet.md: a manifest of kind %q:\n%s", kind.Kind, b[1])
		}
	}
	if jobs == 0 {
		t.Error("docs/fleet.md shows no Job")
	}
}

// TestBadInput: each mistake is refused in one line that says what to
// give, and nothing is written.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(existing, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := []string{"-image", "nixrescue:v0.5.0", "-hostpath", "/srv/images"}
	for _, c := range []struct {
		args       []string
		list, want string
	}{
		{[]string{"-image", "nixrescue:v0.5.0", "-hostpath", "/srv/images"}, "a.qcow2", "-list: name the file"},
		{append([]string{"-list", "-"}, good...), "/srv/images/a.qcow2", "relative to the images' volume"},
		{append([]string{"-list", "-"}, good...), "../a.qcow2", "not an image inside"},
		{append([]string{"-list", "-"}, good...), "a.qcow2\n./a.qcow2", "listed already on line 1"},
		{append([]string{"-list", "-"}, good...), "# nothing\n\n", "names no image"},
		{[]string{"-list", "-", "-hostpath", "/srv/images"}, "a.qcow2", "-image: name nixrescue's OCI image"},
		{[]string{"-list", "-", "-image", "x"}, "a.qcow2", "give one of -hostpath DIR"},
		{[]string{"-list", "-", "-image", "x", "-hostpath", "/srv", "-pvc", "p"}, "a.qcow2", "give one of -hostpath DIR"},
		{[]string{"-list", "-", "-image", "x", "-hostpath", "srv"}, "a.qcow2", "absolute path"},
		{[]string{"-list", "-", "-image", "x", "-pvc", "p", "-node", "n"}, "a.qcow2", "-node pins the Jobs"},
		{append([]string{"-list", "-", "-namespace", "Bad_NS"}, good...), "a.qcow2", "-namespace Bad_NS"},
		{append([]string{"-list", "-", "-deadline", "5m"}, good...), "a.qcow2", "must leave time for the rebuild"},
		{append([]string{"-list", "-", "-o", existing}, good...), "a.qcow2", "nothing is overwritten"},
		{append([]string{"-list", "-", "-color"}, good...), "a.qcow2", "flag provided but not defined: -color"},
	} {
		var out bytes.Buffer
		err := run(c.args, strings.NewReader(c.list), &out)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || out.Len() != 0 {
			t.Errorf("%q with %q: got %v (output %d bytes), want one line with %q", c.args, c.list, err, out.Len(), c.want)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "mine\n" {
		t.Errorf("-o overwrote a file: %q", b)
	}
}

// TestJobName: a DNS label of at most 63 characters for any file name,
// different for one name in two directories.
func TestJobName(t *testing.T) {
	for _, img := range []string{"a.qcow2", "VM Ünïcode__name.qcow2", strings.Repeat("long-", 30) + ".img", "...qcow2", "x/-.img"} {
		if errs := validation.IsDNS1123Label(JobName(img)); len(errs) > 0 {
			t.Errorf("JobName(%q) = %q: %v", img, JobName(img), errs)
		}
	}
	if JobName("a/web.qcow2") == JobName("b/web.qcow2") {
		t.Error("one name in two directories gives one Job name")
	}
}
