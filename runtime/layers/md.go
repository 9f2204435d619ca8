package layers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixrescue/nixrescue/runtime/internal/hosttool"
)

// Array is an md RAID array whose members are on the target.
type Array struct {
	UUID string `json:"uuid"`
	// Name is the array's name in its metadata, without the host part
	// (nixos:boot → boot): its /dev/md/NAME.
	Name  string `json:"name"`
	Level string `json:"level"`
	// Devices is how many members the array has; Members are those
	// found on the target.
	Devices int      `json:"devices"`
	Members []string `json:"members"`
}

// Degraded tells whether members are missing.
func (a Array) Degraded() bool { return len(a.Members) < a.Devices }

// ExamineMD reads the md superblock of member (mdadm --examine).
func ExamineMD(ctx context.Context, member string) (Array, error) {
	out, err := run(ctx, nil, member, MD, "mdadm", "--examine", "--export", member)
	if err != nil {
		return Array{}, failed(err, "read the RAID superblock of %s", member)
	}
	a := ParseExamine(out)
	if a.UUID == "" {
		return a, fmt.Errorf("%s: mdadm --examine gave no array UUID", member)
	}
	a.Members = []string{member}
	return a, nil
}

// ParseExamine reads mdadm --examine --export's KEY=value lines.
func ParseExamine(out []byte) Array {
	var a Array
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "MD_UUID":
			a.UUID = v
		case "MD_LEVEL":
			a.Level = v
		case "MD_DEVICES":
			a.Devices, _ = strconv.Atoi(v)
		case "MD_NAME":
			if _, name, ok := strings.Cut(v, ":"); ok {
				v = name
			}
			a.Name = v
		}
	}
	return a
}

// GroupArrays groups members by array.
func GroupArrays(members []Array) []Array {
	byUUID := map[string]*Array{}
	var order []string
	for _, m := range members {
		a := byUUID[m.UUID]
		if a == nil {
			c := m
			c.Members = nil
			byUUID[m.UUID] = &c
			a = &c
			order = append(order, m.UUID)
		}
		a.Members = append(a.Members, m.Members...)
	}
	out := make([]Array, 0, len(order))
	for _, u := range order {
		out = append(out, *byUUID[u])
	}
	return out
}

// mdadmRunDir is where mdadm keeps its map of arrays.
const mdadmRunDir = "/run/mdadm"

// Planned is what Assemble will open, to record before it does.
func Planned(a Array, name string) Opened {
	o := Opened{Kind: MD, Name: "/dev/md/" + name, Devices: a.Members}
	if _, err := os.Stat(mdadmRunDir); errors.Is(err, os.ErrNotExist) {
		o.MadeRunDir = mdadmRunDir
	}
	return o
}

// Assemble assembles the array from its members found on the target,
// read-only (ReadWrite makes it writable), under name (/dev/md/NAME, the
// session's own); a degraded mirror starts all the same (--run). It
// returns the array's device (/dev/mdN), which is o's Name after. When
// mdadm fails nothing is assembled and o is zero; when the array's device
// is not found after, o is what to stop.
func Assemble(ctx context.Context, a Array, name string) (Opened, string, error) {
	o := Planned(a, name)
	args := append([]string{"--assemble", "--readonly", "--run", "/dev/md/" + name, "--uuid=" + a.UUID}, a.Members...)
	if _, err := hosttool.Run(ctx, nil, "mdadm", args...); err != nil {
		if o.MadeRunDir != "" {
			removeEmptyRunDir(o.MadeRunDir)
		}
		return Opened{}, "", fmt.Errorf("assemble RAID %s (%s) from %s: %w", a.Name, a.UUID, strings.Join(a.Members, ", "), err)
	}
	dev := arrayOf(a.Members[0])
	if dev == "" {
		return o, "", fmt.Errorf("assembled RAID %s, but %s is in no array", a.Name, a.Members[0])
	}
	o.Name = dev
	return o, dev, nil
}

// arrayOf is the md device holding member, waiting a moment for sysfs.
func arrayOf(member string) string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, h := range Holders(member) {
			if strings.HasPrefix(filepath.Base(h), "md") {
				return h
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mdLayer is md's Layer: arrays are assembled read-only, and made
// writable when the session goes writable.
type mdLayer struct{}

func (mdLayer) Kind() Kind           { return MD }
func (mdLayer) Keyed() bool          { return false }
func (mdLayer) Usable(f Found) error { return nil }
func (mdLayer) Describe(f Found) Info {
	return Info{Kind: MD, On: f.Members, State: "found", Name: f.Array.Name, Array: f.Array}
}
func (mdLayer) Planned(f Found, name string) Opened { return Planned(*f.Array, name) }

// Find reads each member's superblock and groups them by array.
func (mdLayer) Find(ctx context.Context, members []string) ([]Found, error) {
	var read []Array
	for _, m := range members {
		a, err := ExamineMD(ctx, m)
		if err != nil {
			return nil, err
		}
		read = append(read, a)
	}
	var out []Found
	for _, a := range GroupArrays(read) {
		out = append(out, Found{Kind: MD, Members: a.Members, Array: &a})
	}
	return out, nil
}

// Open assembles the array, read-only; a degraded one runs on the members
// there, and says so.
func (mdLayer) Open(ctx context.Context, f Found, name string, _ OpenOptions) (Result, error) {
	a := *f.Array
	o, dev, err := Assemble(ctx, a, name)
	if err != nil {
		return Result{Opened: o}, err // o: assembled, its device not found
	}
	r := Result{Opened: o, Info: Info{Kind: MD, On: a.Members, State: "assembled", Name: a.Name, Device: dev, Array: &a}}
	if a.Degraded() {
		r.Info.State = "degraded"
		r.Warnings = append(r.Warnings, fmt.Sprintf("RAID %s (%s, %s) is degraded: %d of its %d members are here (%s); it runs on those", a.Name, a.Level, a.UUID, len(a.Members), a.Devices, strings.Join(a.Members, ", ")))
	}
	v := Volume{Device: dev}
	if a.Name != "" {
		v.Names = []string{"/dev/md/" + a.Name}
	}
	r.Volumes = []Volume{v}
	return r, nil
}

// Close stops the array. Recorded before it was assembled, by the name
// asked for, its kernel device is found through a member when that name
// is not there.
func (mdLayer) Close(ctx context.Context, o Opened) error {
	dev := o.Name
	if _, err := os.Stat(dev); errors.Is(err, os.ErrNotExist) && len(o.Devices) > 0 {
		dev = ""
		for _, h := range Holders(o.Devices[0]) {
			if strings.HasPrefix(filepath.Base(h), "md") {
				dev = h
			}
		}
	}
	if dev == "" {
		return nil
	}
	_, err := hosttool.Run(ctx, nil, "mdadm", "--stop", dev)
	return err
}

// ReadWrite makes an array assembled read-only writable.
func (mdLayer) ReadWrite(ctx context.Context, o Opened) error {
	if _, err := hosttool.Run(ctx, nil, "mdadm", "--readwrite", o.Name); err != nil {
		return fmt.Errorf("make RAID %s writable: %w", o.Name, err)
	}
	return nil
}
