// Command fleet writes Kubernetes Jobs that repair disk images with
// nixrescue, one Job per image of a list (docs/fleet.md): an init
// container rebuilds the image (or a --snapshot-out overlay beside it),
// the Job's container boot-tests the result, and the Job succeeds when
// both exit 0. Kubernetes schedules, retries and limits the work;
// nixrescue is one well-behaved task in it.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Options say how the Jobs run.
type Options struct {
	// Image is nixrescue's OCI image (hack/release writes it).
	Image string
	// HostPath is a node's directory holding the images, or PVC a
	// PersistentVolumeClaim: exactly one. Node pins the Jobs to the node
	// of HostPath.
	HostPath, PVC, Node string
	// InPlace repairs the images themselves; otherwise each rebuild
	// writes a --snapshot-out overlay beside its image, named after the
	// pod (NAME.repaired-POD.qcow2), and the image is left as it was.
	InPlace   bool
	Namespace string
	// Deadline is each Job's activeDeadlineSeconds; Backoff its
	// backoffLimit.
	Deadline time.Duration
	Backoff  int32
	// Until and BootTimeout are boot-test's --until and --timeout.
	Until       string
	BootTimeout time.Duration
}

// Defaults: an hour for a rebuild (which may download and build) and a
// boot test; one retry, for a pod lost for other reasons than the repair;
// boot-test's own limit well inside the Job's.
var Defaults = Options{Namespace: "default", Deadline: time.Hour, Backoff: 1, Until: "multi-user", BootTimeout: 10 * time.Minute}

// Where the pod sees things.
const (
	imagesDir = "/images"
	auditLog  = "/var/log/nixrescue/audit.log"
	// badInput is nixrescue's exit status for input it refuses: the same
	// pod would be refused again, so the Job fails at once.
	badInput = 125
)

// ReadList reads the images to repair, one path per line relative to the
// images' volume; blank lines and lines starting with # are skipped.
func ReadList(r io.Reader) ([]string, error) {
	var out []string
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		clean := path.Clean(l)
		switch {
		case path.IsAbs(l):
			return nil, fmt.Errorf("line %d: %s: give the image's path relative to the images' volume (-hostpath or -pvc), not an absolute one", n, l)
		case clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.HasSuffix(l, "/"):
			return nil, fmt.Errorf("line %d: %s: not an image inside the images' volume", n, l)
		case seen[clean] != 0:
			return nil, fmt.Errorf("line %d: %s is listed already on line %d: one Job per image", n, l, seen[clean])
		}
		seen[clean] = n
		out = append(out, clean)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the list names no image")
	}
	return out, nil
}

// Check says what is wrong with o, in one line.
func (o Options) Check() error {
	switch {
	case o.Image == "":
		return fmt.Errorf("-image: name nixrescue's OCI image (as hack/release tags it, e.g. nixrescue:v0.5.0)")
	case (o.HostPath == "") == (o.PVC == ""):
		return fmt.Errorf("give one of -hostpath DIR (a node's directory of images) or -pvc NAME (a PersistentVolumeClaim holding them)")
	case o.HostPath != "" && !path.IsAbs(o.HostPath):
		return fmt.Errorf("-hostpath %s: give the node's directory as an absolute path", o.HostPath)
	case o.Node != "" && o.HostPath == "":
		return fmt.Errorf("-node pins the Jobs to the node of -hostpath; a -pvc's volume goes where Kubernetes attaches it")
	case len(validation.IsDNS1123Label(o.Namespace)) > 0:
		return fmt.Errorf("-namespace %s: %s", o.Namespace, validation.IsDNS1123Label(o.Namespace)[0])
	case o.Deadline <= o.BootTimeout:
		return fmt.Errorf("-deadline %s must leave time for the rebuild beside -boot-timeout %s", o.Deadline, o.BootTimeout)
	case o.Backoff < 0:
		return fmt.Errorf("-backoff %d: give 0 or more retries", o.Backoff)
	}
	return nil
}

// JobName is image's Job's name: a DNS label (at most 63 characters) made
// of the image's name and a hash of its path, so that two images of one
// name in two directories get two Jobs.
func JobName(image string) string {
	sum := sha256.Sum256([]byte(image))
	base := strings.TrimSuffix(path.Base(image), path.Ext(image))
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	slug := strings.Trim(b.String(), "-")
	if len(slug) > 40 {
		slug = strings.Trim(slug[:40], "-")
	}
	if slug == "" {
		slug = "image"
	}
	return "nixrescue-" + slug + "-" + hex.EncodeToString(sum[:])[:8]
}

// Jobs are the Jobs of images.
func Jobs(o Options, images []string) ([]*batchv1.Job, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	var out []*batchv1.Job
	for _, img := range images {
		out = append(out, job(o, img))
	}
	return out, nil
}

// job is the Job of one image.
func job(o Options, img string) *batchv1.Job {
	target := path.Join(imagesDir, img)
	rebuild := []string{"rebuild", target, "--json", "--audit-log", auditLog}
	tested := target
	if !o.InPlace {
		// nixrescue never overwrites an overlay: a retry (another pod)
		// writes its own, named after it.
		tested = strings.TrimSuffix(target, path.Ext(target)) + ".repaired-$(POD_NAME).qcow2"
		rebuild = append(rebuild, "--snapshot", "--snapshot-out", tested)
	}
	boot := []string{"boot-test", tested, "--json", "--until", o.Until, "--timeout", o.BootTimeout.String(), "--audit-log", auditLog}
	labels := map[string]string{"app.kubernetes.io/name": "nixrescue", "app.kubernetes.io/component": "repair"}
	j := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: JobName(img), Namespace: o.Namespace, Labels: labels,
			Annotations: map[string]string{"nixrescue.io/image": img}},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(o.Backoff),
			ActiveDeadlineSeconds:   ptr(int64(o.Deadline / time.Second)),
			TTLSecondsAfterFinished: ptr(int32(24 * 3600)),
			PodFailurePolicy:        failurePolicy(),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       podSpec(o, rebuild, boot),
			},
		},
	}
	return j
}

// failurePolicy fails the Job at once when nixrescue refused its input
// (exit 125: a retry would be refused too), and does not count a pod
// lost to a node's drain or a preemption against backoffLimit.
func failurePolicy() *batchv1.PodFailurePolicy {
	return &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{badInput}}},
		{Action: batchv1.PodFailurePolicyActionIgnore,
			OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
	}}
}

// podSpec is the pod's: the rebuild as its init container, the boot test
// as its container, both privileged with the node's /dev, the node's
// /run/nixrescue (claims: one writer per image among the pods of a node)
// and /var/log/nixrescue (audit records), and the images' volume.
func podSpec(o Options, rebuild, boot []string) corev1.PodSpec {
	mounts := []corev1.VolumeMount{{Name: "images", MountPath: imagesDir}, {Name: "dev", MountPath: "/dev"},
		{Name: "run-nixrescue", MountPath: "/run/nixrescue"}, {Name: "audit", MountPath: "/var/log/nixrescue"}}
	container := func(name string, args []string, mem string) corev1.Container {
		return corev1.Container{Name: name, Image: o.Image, Command: []string{"nixrescue"}, Args: args, VolumeMounts: mounts,
			Env:             []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse(mem)}}}
	}
	host := func(name, p string, t corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: p, Type: ptr(t)}}}
	}
	images := host("images", o.HostPath, corev1.HostPathDirectory)
	if o.PVC != "" {
		images = corev1.Volume{Name: "images", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: o.PVC}}}
	}
	spec := corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{container("rebuild", rebuild, "512Mi")},
		// boot-test's VM has 1 GiB by default.
		Containers: []corev1.Container{container("boot-test", boot, "1536Mi")},
		Volumes: []corev1.Volume{images, host("dev", "/dev", corev1.HostPathDirectory),
			host("run-nixrescue", "/run/nixrescue", corev1.HostPathDirectoryOrCreate),
			host("audit", "/var/log/nixrescue", corev1.HostPathDirectoryOrCreate)},
	}
	if o.Node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": o.Node}
	}
	return spec
}

func ptr[T any](v T) *T { return &v }

// WriteYAML writes the Jobs as one YAML stream.
func WriteYAML(w io.Writer, jobs []*batchv1.Job) error {
	for i, j := range jobs {
		b, err := yaml.Marshal(j)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
