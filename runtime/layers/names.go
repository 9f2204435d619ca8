package layers

import (
	"strings"

	"github.com/nixrescue/nixrescue/runtime/internal/lazyre"
)

// LUKSName is a name the target's configuration gives a LUKS volume
// (boot.initrd.luks.devices.NAME), with the device it names.
type LUKSName struct {
	Name   string
	Device string
}

var (
	// boot.initrd.luks.devices."NAME".device = "DEV" (and NAME bare).
	luksDotRE = lazyre.New(`luks\s*\.\s*devices\s*\.\s*("[^"]+"|[A-Za-z0-9_'-]+)\s*\.\s*device\s*=\s*"([^"]+)"`)
	// boot.initrd.luks.devices."NAME" = { … device = "DEV"; … };
	luksAttrRE = lazyre.New(`luks\s*\.\s*devices\s*\.\s*("[^"]+"|[A-Za-z0-9_'-]+)\s*=\s*\{`)
	// boot.initrd.luks.devices = { NAME = { … }; … };
	luksSetRE = lazyre.New(`luks\s*\.\s*devices\s*=\s*\{`)
	// An attribute of a set: NAME = {
	attrOpenRE = lazyre.New(`^\s*("[^"]+"|[A-Za-z0-9_'-]+)\s*=\s*\{`)
	deviceRE   = lazyre.New(`(?:^|[;{\s])device\s*=\s*"([^"]+)"`)
	nameRE     = lazyre.New(`(?:^|[;{\s])name\s*=\s*"([^"]+)"`)
	// boot.initrd.luks.devices = [ { name = "NAME"; device = "DEV"; } ];
	luksListRE = lazyre.New(`luks\s*\.\s*devices\s*=\s*\[`)
	commentRE  = lazyre.New(`(?m)#.*$`)
)

// ParseLUKSNames reads the LUKS volumes a NixOS configuration file
// declares, in the forms the manual, nixos-generate-config and the
// installers write: devices."NAME".device = …, devices.NAME = { device =
// …; }, devices = { NAME = { device = …; }; }, and the old list of
// { name; device; }. Comments are skipped; nothing is evaluated.
func ParseLUKSNames(text string) []LUKSName {
	text = commentRE().ReplaceAllString(text, "")
	var out []LUKSName
	add := func(name, dev string) {
		name = strings.Trim(name, `"`)
		for _, n := range out {
			if n.Name == name {
				return
			}
		}
		out = append(out, LUKSName{Name: name, Device: dev})
	}
	for _, m := range luksDotRE().FindAllStringSubmatch(text, -1) {
		add(m[1], m[2])
	}
	for _, loc := range luksAttrRE().FindAllStringSubmatchIndex(text, -1) {
		body := braced(text, loc[1]-1)
		if d := deviceRE().FindStringSubmatch(body); d != nil {
			add(text[loc[2]:loc[3]], d[1])
		}
	}
	for _, loc := range luksSetRE().FindAllStringIndex(text, -1) {
		set := braced(text, loc[1]-1)
		inner := set[1 : len(set)-1]
		for i := 0; i < len(inner); {
			m := attrOpenRE().FindStringSubmatchIndex(inner[i:])
			if m == nil {
				break
			}
			body := braced(inner, i+m[1]-1)
			if d := deviceRE().FindStringSubmatch(body); d != nil {
				add(inner[i+m[2]:i+m[3]], d[1])
			}
			next := strings.IndexByte(inner[i+m[1]-1+len(body):], ';')
			if next < 0 {
				break
			}
			i += m[1] - 1 + len(body) + next + 1
		}
	}
	for _, loc := range luksListRE().FindAllStringIndex(text, -1) {
		end := strings.IndexByte(text[loc[1]:], ']')
		if end < 0 {
			continue
		}
		for _, item := range strings.Split(text[loc[1]:loc[1]+end], "}") {
			n, d := nameRE().FindStringSubmatch(item), deviceRE().FindStringSubmatch(item)
			if n != nil && d != nil {
				add(n[1], d[1])
			}
		}
	}
	return out
}

// braced returns the text of the braces opening at text[open], braces
// included (to the end of text when they are not closed); braces in
// strings are counted too, which configurations of LUKS devices do not
// have.
func braced(text string, open int) string {
	depth := 0
	for i := open; i < len(text); i++ {
		switch text[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return text[open : i+1]
			}
		}
	}
	return text[open:]
}

// DefaultLUKSName is the name NixOS's installers give a LUKS volume
// (luks-UUID), used inside the container when the configuration names it
// nowhere.
func DefaultLUKSName(uuid string) string { return "luks-" + uuid }
