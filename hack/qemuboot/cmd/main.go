// Command qemuboot boots a disk image and prints its serial console:
//
//	go run ./hack/qemuboot/cmd IMAGE [TIMEOUT]
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nixrescue/nixrescue/hack/qemuboot"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: qemuboot IMAGE [TIMEOUT]")
		os.Exit(2)
	}
	timeout := 60 * time.Second
	if len(os.Args) > 2 {
		d, err := time.ParseDuration(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		timeout = d
	}
	r, err := qemuboot.Boot(context.Background(), os.Args[1], timeout)
	fmt.Print(r.Output)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if r.TimedOut {
		fmt.Fprintf(os.Stderr, "qemuboot: no end after %s (the disk did not boot to a halt)\n", timeout)
		os.Exit(1)
	}
}
