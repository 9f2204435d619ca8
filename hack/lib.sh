# Shared by the scripts in hack/: Go on PATH and the static build of
# nixrescue. Source it; it defines functions and changes nothing.

export PATH="$PATH:/usr/local/go/bin"

# build_static OUT: the fully static nixrescue (cgo for libcontainer's
# nsenter, glibc linked in). It must be static: it also runs inside the
# target as the container's helper, where none of this host's libraries are.
# GOARCH and CC in the environment choose another architecture (arm64 with
# aarch64-linux-gnu-gcc). The version is git's description of the checkout
# (the nearest tag, or the commit, "-dirty" when it has changes), shown by
# nixrescue --version.
build_static() {
	CGO_ENABLED=1 go build -trimpath -tags "$nixrescue_tags" \
		-ldflags "-extldflags -static -X main.version=$(nixrescue_version)" -o "$1" ./cmd/nixrescue
}

# nixrescue_tags are the build tags of every nixrescue binary: Go's own
# resolver and user lookup (no glibc NSS in a static binary), and grpc
# without its x/net/trace debugging pages, which containerd's client never
# enables and which bring html/template: 4 MB of the binary's 18 MB of
# code, mapped by every nixrescue process (peak RSS) and initialised by
# each (a session starts two).
nixrescue_tags="netgo osusergo grpcnotrace"

# nixrescue_version describes the checkout for --version.
nixrescue_version() {
	git describe --tags --always --dirty 2>/dev/null || echo unknown
}
