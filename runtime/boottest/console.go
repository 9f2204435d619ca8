// Package boottest boots a target in a throwaway VM, through its own
// firmware and bootloader, and reads on the serial console how far it got:
// the proof that a repair worked. The target is never written: the VM's
// disk is a qcow2 overlay on it, made by a --snapshot session, in which
// the bootloader's configuration gets a serial console and the entry to
// boot.
package boottest

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

// Milestone is a point of a NixOS boot the console shows.
type Milestone string

// The milestones, in the order a boot reaches them. What marks each is
// read from nixpkgs (stage-1-init.sh, stage-2-init.sh) and systemd; the
// README's boot-test part lists them.
const (
	Firmware   Milestone = "firmware"
	Bootloader Milestone = "bootloader"
	Kernel     Milestone = "kernel"
	Stage1     Milestone = "stage-1"
	Root       Milestone = "root"
	Stage2     Milestone = "stage-2"
	MultiUser  Milestone = "multi-user"
)

// Milestones are all of them, in order.
var Milestones = []Milestone{Firmware, Bootloader, Kernel, Stage1, Root, Stage2, MultiUser}

// Index is where m is in Milestones, -1 when it is none.
func Index(m Milestone) int { return slices.Index(Milestones, m) }

var (
	firmwareRE   = lazyre.New(`SeaBIOS \(version|BdsDxe: |UEFI firmware|Booting from Hard Disk`)
	bootloaderRE = lazyre.New("Booting `(.*)'|BdsDxe: starting Boot[0-9A-F]+ \"([^\"]+)\"|Welcome to GRUB|Boot in [0-9]+ s")
	kernelRE     = lazyre.New(`Linux version [0-9]|Command line: |EFI stub: |Decompressing Linux|Run /init as init process`)
	stage1RE     = lazyre.New(`<<< .* Stage 1 >>>`)
	rootRE       = lazyre.New(`^mounting (\S+) on /\.\.\.`)
	stage2RE     = lazyre.New(`<<< .* Stage 2 >>>`)
	multiUserRE  = lazyre.New(`Reached target (multi-user\.target|Multi-User System)`)
	cmdlineRE    = lazyre.New(`init=/nix/store/[0-9a-z]{32}-(nixos-system-[^/ ]+)/init`)
	failedUnitRE = lazyre.New(`\[FAILED\] Failed to start (\S+)`)
	// What ends a boot short of its goal.
	stage1FailRE = lazyre.New(`An error occurred in stage 1 of the boot process|Timed out waiting for device|waiting for device \S+ to appear|mount: mounting \S+ on /mnt-root/? failed|Kernel panic - not syncing|You are in emergency mode|Cannot open access to console, the root account is locked|error: (file|disk) .* not found|no such device`)
	ansiRE       = lazyre.New(`\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]`)
)

// Console reads a boot's serial console line by line and keeps what it
// shows: the milestones reached and when, the entry booted, the system
// (from the kernel's command line, when it prints it), the failure that
// stopped it, the units that failed.
type Console struct {
	Reached map[Milestone]time.Duration
	// Entry is the bootloader's entry, as it names it ("NixOS -
	// Configuration 3"), when it says.
	Entry string
	// System is the nixos-system-… store name the kernel was given.
	System string
	// Failure are the console's lines about what stopped the boot.
	Failure     []string
	FailedUnits []string
	// Stuck is set once a failure that ends the boot was seen (stage 1's
	// error, a panic, emergency mode): nothing more will come.
	Stuck bool
	// rootAt is when stage 1 said it mounts the root: reached unless its
	// mount fails next.
	rootAt *time.Duration
}

// mountFailedRE is stage 1's word that a mount failed.
var mountFailedRE = lazyre.New(`mount: mounting \S+ on /mnt-root/? failed`)

// NewConsole starts reading a console.
func NewConsole() *Console { return &Console{Reached: map[Milestone]time.Duration{}} }

// reach notes m at d, and the milestones before it that left no mark
// (a kernel that prints nothing at loglevel 4 was reached all the same
// when stage 1 speaks).
func (c *Console) reach(m Milestone, d time.Duration) {
	for _, x := range Milestones[:Index(m)+1] {
		if _, ok := c.Reached[x]; !ok {
			c.Reached[x] = d
		}
	}
}

// Add reads one line of the console, seen at d after the start.
func (c *Console) Add(line string, d time.Duration) {
	line = strings.TrimRight(ansiRE().ReplaceAllString(line, ""), "\r\n ")
	text := strings.TrimSpace(line)
	if text == "" {
		return
	}
	if _, ok := c.Reached[Firmware]; !ok {
		// Whatever comes first is the firmware's (SeaBIOS, OVMF).
		c.Reached[Firmware] = d
	}
	switch {
	case firmwareRE().MatchString(text):
	case bootloaderRE().MatchString(text):
		// GRUB names the entry it boots; OVMF, the boot option.
		m := bootloaderRE().FindStringSubmatch(text)
		if m[1] != "" || c.Entry == "" {
			c.Entry = m[1] + m[2]
		}
		c.reach(Bootloader, d)
	}
	if m := cmdlineRE().FindStringSubmatch(text); m != nil {
		c.System = m[1]
	}
	// stage-1-init.sh says "mounting DEVICE on /..." before it mounts:
	// the root is mounted unless the next line says the mount failed.
	if c.rootAt != nil && !rootRE().MatchString(text) {
		if !mountFailedRE().MatchString(text) {
			c.reach(Root, *c.rootAt)
		}
		c.rootAt = nil
	}
	switch {
	case kernelRE().MatchString(text):
		c.reach(Kernel, d)
	case stage1RE().MatchString(text):
		c.reach(Stage1, d)
	case rootRE().MatchString(text):
		c.reach(Stage1, d)
		c.rootAt = &d
	case stage2RE().MatchString(text):
		c.reach(Stage2, d)
	case multiUserRE().MatchString(text):
		c.reach(MultiUser, d)
	}
	if m := failedUnitRE().FindStringSubmatch(text); m != nil {
		unit := strings.TrimSuffix(m[1], ".")
		c.FailedUnits = append(c.FailedUnits, unit)
		c.Failure = append(c.Failure, text)
	}
	if stage1FailRE().MatchString(text) {
		c.Failure = append(c.Failure, text)
		if strings.Contains(text, "An error occurred in stage 1") || strings.Contains(text, "Kernel panic") ||
			strings.Contains(text, "emergency mode") || strings.Contains(text, "not found") {
			c.Stuck = true
		}
	}
}

// Furthest is the last milestone reached, "" when none.
func (c *Console) Furthest() Milestone {
	var last Milestone
	for _, m := range Milestones {
		if _, ok := c.Reached[m]; ok {
			last = m
		}
	}
	return last
}

// Has tells whether m was reached.
func (c *Console) Has(m Milestone) bool {
	_, ok := c.Reached[m]
	return ok
}

// GenerationOf reads a generation number from a bootloader entry's name
// ("NixOS - Configuration 3 (…)", "nixos-generation-3.conf"), 0 when it
// names none.
func GenerationOf(entry string) int {
	for _, re := range []func() *regexp.Regexp{configurationRE, generationFileRE} {
		if m := re().FindStringSubmatch(entry); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

var (
	configurationRE  = lazyre.New(`Configuration ([0-9]+)`)
	generationFileRE = lazyre.New(`generation-([0-9]+)`)
)
