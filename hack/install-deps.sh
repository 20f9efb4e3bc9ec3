#!/usr/bin/env bash
# Installs what `make test` and `make up` need on a Debian machine, and with
# --lint also golangci-lint. Idempotent: what is already there is left alone,
# and `apt-get update` runs only when a package is missing.
#
# Usage: hack/install-deps.sh [--lint]
# Extra Debian packages can be added for one run with EXTRA_APT_PACKAGES="a b".
set -euo pipefail

# Debian packages the build, the tests and `make up` need. Issues that need
# more (containerd, runc, containernetworking-plugins, nftables, iptables,
# busybox-static, ...) add them here.
APT_PACKAGES=(
	etcd-server    # `etcd` for the external-etcd e2e tests
	busybox-static # /bin/busybox for the skiff.local/busybox and testserver images
	containerd     # the agent's container runtime (CRI plugin) and `ctr` for image import
	runc           # the OCI runtime containerd starts containers with
	containernetworking-plugins # CNI bridge, host-local, portmap, loopback (/usr/lib/cni)
	iproute2       # `ip`, `bridge`: the lab's namespaces and veths, the pod network's routes and VXLAN device, the CRI test's cleanup
	nftables       # packet filtering rules of the pod network
	iptables       # the portmap and bridge (ipMasq) CNI plugins call iptables
)

# golangci-lint, built from source with the local Go toolchain (v2.15.0 builds
# and runs with Go 1.26). Only installed with --lint: it takes minutes to build.
GOLANGCI_LINT_VERSION=v2.15.0

lint=false
for arg in "$@"; do
	case $arg in
	--lint) lint=true ;;
	-h | --help)
		sed -n '2,8s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "install-deps: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

log() { echo "install-deps: $*"; }

install_apt_packages() {
	local -a wanted=("${APT_PACKAGES[@]}")
	if [[ -n ${EXTRA_APT_PACKAGES:-} ]]; then
		read -r -a extra <<<"$EXTRA_APT_PACKAGES"
		wanted+=("${extra[@]}")
	fi
	local -a missing=()
	local pkg
	for pkg in "${wanted[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
			missing+=("$pkg")
		fi
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		log "apt packages present: ${wanted[*]}"
		return
	fi

	local -a sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			echo "install-deps: missing Debian packages (${missing[*]}); run this script as root" >&2
			exit 1
		fi
		sudo=(sudo)
	fi

	# Packages such as etcd-server ship a service that would start on install
	# and hold ports the tests use. Keep services from starting while we
	# install, unless the machine already has a policy in place.
	local policy=/usr/sbin/policy-rc.d
	local made_policy=false
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 0755 "$policy"
		made_policy=true
	fi

	log "installing: ${missing[*]}"
	local rc=0
	{
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends "${missing[@]}" </dev/null
	} || rc=$?
	if $made_policy; then
		"${sudo[@]}" rm -f "$policy"
	fi
	if [[ $rc -ne 0 ]]; then
		echo "install-deps: apt-get failed (exit $rc)" >&2
		exit "$rc"
	fi
}

install_golangci_lint() {
	local bin
	bin="$(go env GOPATH)/bin/golangci-lint"
	if [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "version ${GOLANGCI_LINT_VERSION#v} "; then
		log "golangci-lint ${GOLANGCI_LINT_VERSION} present"
		return
	fi
	log "building golangci-lint ${GOLANGCI_LINT_VERSION} (takes a few minutes)"
	go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_LINT_VERSION}"
	"$bin" version
}

install_apt_packages
if command -v etcd >/dev/null; then
	log "$(etcd --version | head -n 1)"
fi
if $lint; then
	install_golangci_lint
fi
