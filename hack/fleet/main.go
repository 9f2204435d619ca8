package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(2)
	}
}

// run turns flags into Options, reads the list and writes the Jobs.
func run(args []string, stdin io.Reader, stdout io.Writer) error {
	o := Defaults
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	list := fs.String("list", "", "the images to repair, one path per line relative to the images' volume (- reads standard input)")
	out := fs.String("o", "", "write the Jobs to this `FILE` (default: standard output)")
	fs.StringVar(&o.Image, "image", "", "nixrescue's OCI image, as hack/release tags it (e.g. nixrescue:v0.5.0)")
	fs.StringVar(&o.HostPath, "hostpath", "", "a node's `DIR` holding the images (with -node: which node)")
	fs.StringVar(&o.PVC, "pvc", "", "a PersistentVolumeClaim `NAME` holding the images")
	fs.StringVar(&o.Node, "node", "", "run the Jobs on this node (the one whose -hostpath holds the images)")
	fs.BoolVar(&o.InPlace, "in-place", false, "repair the images themselves (default: write NAME.repaired-POD.qcow2 beside each, the image left as it was)")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "the Jobs' namespace")
	fs.DurationVar(&o.Deadline, "deadline", o.Deadline, "each Job's activeDeadlineSeconds: the rebuild and the boot test together")
	fs.Func("backoff", fmt.Sprintf("each Job's backoffLimit: retries of a failed pod (default %d)", o.Backoff), func(s string) error {
		_, err := fmt.Sscan(s, &o.Backoff)
		return err
	})
	fs.StringVar(&o.Until, "until", o.Until, "boot-test's milestone that passes: stage-1, root, stage-2 or multi-user")
	fs.DurationVar(&o.BootTimeout, "boot-timeout", o.BootTimeout, "boot-test's --timeout")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v (usage: go run ./hack/fleet -list FILE -image REF -hostpath DIR|-pvc NAME [-o FILE])", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: the images come from -list", fs.Arg(0))
	}
	if *list == "" {
		return fmt.Errorf("-list: name the file that lists the images (- for standard input)")
	}
	images, err := readListFile(*list, stdin)
	if err != nil {
		return err
	}
	jobs, err := Jobs(o, images)
	if err != nil {
		return err
	}
	if *out == "" {
		return WriteYAML(stdout, jobs)
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("-o %s: %w (nothing is overwritten)", *out, err)
	}
	if err := WriteYAML(f, jobs); err != nil {
		f.Close()
		os.Remove(*out)
		return err
	}
	return f.Close()
}

// readListFile reads the list from name, or stdin for -.
func readListFile(name string, stdin io.Reader) ([]string, error) {
	if name == "-" {
		return ReadList(stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("-list: %w", err)
	}
	defer f.Close()
	images, err := ReadList(f)
	if err != nil {
		return nil, fmt.Errorf("-list %s: %w", name, err)
	}
	return images, nil
}
