// Command mkfixture writes a NixOS-shaped root directory for trying
// nixrescue by hand and for its tests (see package hack/fixture).
//
//	go run ./hack/mkfixture -resolv nixos-chain /tmp/nixos-root
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixrescue/nixrescue/hack/fixture"
)

func main() {
	resolv := flag.String("resolv", string(fixture.ResolvNixOSChain), "shape of /etc/resolv.conf: file, missing, run-link or nixos-chain")
	hostname := flag.String("hostname", "nixfixture", "the target's hostname")
	busybox := flag.String("busybox", "", "static busybox to copy in (default: Debian's busybox-static of -arch)")
	realNix := flag.Bool("real-nix", false, "put a real Nix, GRUB and udevadm (the host's) into the store (root needed)")
	flake := flag.Bool("flake", false, "make the configuration a flake (with -real-nix): /etc/nixos/flake.nix, nixosConfigurations.HOSTNAME")
	image := flag.String("image", "", "write a disk image of this `layout` (bios, efi, btrfs, xfs-nix, bare, mbr, gpt-4k, uefi, grub-efi, sd) to the path instead of a directory (root needed)")
	layered := flag.String("layered", "", "write a layered fixture of this `layout` (luks, lvm-on-luks, luks1-boot, raid1) into the directory: its disk, its filesystem images and layers.sh, which makes the layers in hack/vm's rescue host (root needed)")
	kdf := flag.String("kdf", "argon2id", "LUKS2 key derivation of a layered fixture: argon2id or pbkdf2")
	degraded := flag.Bool("degraded", false, "a layered raid1 fixture with one member of each mirror missing")
	loader := flag.String("bootloader", "", "what the configuration installs: grub-bios (the default), grub-efi, systemd-boot or extlinux")
	old := flag.Int("old-generations", 0, "`N` more generations before the usual two, each with a kernel and initrd of its own")
	arch := flag.String("arch", "x86_64", "the system's architecture: x86_64, or aarch64 (Debian's arm64 programs; hack/install-deps downloads them)")
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
	if *layered != "" {
		l, err := fixture.BuildLayered(flag.Arg(0), fixture.LayeredOptions{Layout: fixture.LayeredLayout(*layered), KDF: *kdf, Degraded: *degraded,
			Root: fixture.Options{Hostname: *hostname, Resolv: fixture.ResolvShape(*resolv), Busybox: *busybox, RealNix: *realNix, Flake: *flake, Kernel: *kernel}})
		if err == nil {
			err = os.WriteFile(filepath.Join(flag.Arg(0), "layers.sh"), []byte(l.Script), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkfixture: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("layered fixture %s: disk %s, payloads %s; in the VM: . layers.sh; %s DISK PAYLOAD…\n", *layered, l.Image.Path, strings.Join(l.Payloads, " "), l.Function)
		return
	}
	opts := fixture.Options{Hostname: *hostname, Resolv: fixture.ResolvShape(*resolv), Busybox: *busybox, RealNix: *realNix, Flake: *flake, Kernel: *kernel, Bootloader: *loader, OldGenerations: *old, Arch: *arch}
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
