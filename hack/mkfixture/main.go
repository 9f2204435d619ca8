// Command mkfixture writes a NixOS-shaped root directory for trying
// nixrescue by hand and for its tests (see package hack/fixture).
//
//	go run ./hack/mkfixture -resolv nixos-chain /tmp/nixos-root
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nixrescue/nixrescue/hack/fixture"
)

func main() {
	resolv := flag.String("resolv", string(fixture.ResolvNixOSChain), "shape of /etc/resolv.conf: file, missing, run-link or nixos-chain")
	hostname := flag.String("hostname", "nixfixture", "the target's hostname")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox to copy in")
	realNix := flag.Bool("real-nix", false, "put a real Nix, GRUB and udevadm (the host's) into the store (root needed)")
	image := flag.String("image", "", "write a disk image of this `layout` (bios, efi, btrfs, xfs-nix, bare, mbr, gpt-4k, uefi, grub-efi) to the path instead of a directory (root needed)")
	kernel := flag.String("kernel", "", "a real kernel `image` for the generations, with the fixture's initrd, so that the disk boots (hack/vm's: Debian's)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkfixture [flags] DIR\n       mkfixture -image LAYOUT [flags] FILE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	dir := flag.Arg(0)
	opts := fixture.Options{Hostname: *hostname, Resolv: fixture.ResolvShape(*resolv), Busybox: *busybox, RealNix: *realNix, Kernel: *kernel}
	if *image != "" {
		img, err := fixture.BuildImage(dir, fixture.ImageOptions{Layout: fixture.DiskLayout(*image), Root: opts})
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkfixture: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("NixOS disk image (%s) in %s; fstab:\n%s", *image, img.Path, img.Fstab)
		return
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		fmt.Fprintf(os.Stderr, "mkfixture: %s is not empty: name a new directory\n", dir)
		os.Exit(1)
	}
	l, err := fixture.Build(dir, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkfixture: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("NixOS-shaped root in %s; current system %s\n", dir, l.Systems[len(l.Systems)-1])
}
