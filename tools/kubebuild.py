#!/usr/bin/env python3
"""Build a real kube-apiserver and kube-controller-manager for the tests.

No package registry here ships these binaries; Debian's ``kubernetes``
source package vendors everything they need. This script fetches that
source with a private apt state (the machine's own apt configuration stays
untouched), builds the two commands in GOPATH mode with no network, and
keeps them in a cache outside the clone:

    ~/.cache/creativeflow-mlops/kubernetes-v1.20.2/{kube-apiserver,kube-controller-manager}

    python3 tools/kubebuild.py          build unless cached, print the folder

A cold build takes about 5 minutes on 2 cores and 1.4 GB of memory. The
test run calls ``ensure()``; when a build is impossible it raises with
what is missing, and the tests that need a cluster fail with that message.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERSION = "v1.20.2"
COMMIT = "faecb196815e248d3ecfb03c680a4507229c2a56"
BINARIES = ("kube-apiserver", "kube-controller-manager")
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "creativeflow-mlops"
    / f"kubernetes-{VERSION}-reflect2"
)
# the build's tools and the cluster's store, from Debian
DEBIAN_PACKAGES = {
    "go": "golang-go",
    "etcd": "etcd-server",
    "make": "make",
    "rsync": "rsync",
    "openssl": "openssl",
    "dpkg-source": "dpkg-dev",
}
SOURCES = (
    "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian bookworm main\n"
)


class BuildError(RuntimeError):
    """The cluster binaries cannot be built here; the message says why."""


def log(message):
    print(f"[kubebuild] {message}", file=sys.stderr, flush=True)


def cached():
    """The cache folder when both binaries are in it, else None."""
    if all(os.access(CACHE / name, os.X_OK) for name in BINARIES):
        return CACHE
    return None


def _apt_install(packages):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BuildError(
            f"{', '.join(packages)} missing: install them "
            f"(apt-get install {' '.join(packages)}) or run as root"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["apt-get", "update", "-qq"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def ensure_tools():
    missing = [
        pkg for binary, pkg in DEBIAN_PACKAGES.items() if not shutil.which(binary)
    ]
    if missing:
        log(f"installing {' '.join(missing)} from Debian")
        _apt_install(missing)


def _fetch_source(work):
    """``apt-get source kubernetes`` with an apt state of its own."""
    apt = work / "apt"
    (apt / "lists" / "partial").mkdir(parents=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True)
    (apt / "sources.list").write_text(SOURCES)
    options = [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", "APT::Sandbox::User=root",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
    ]  # fmt: skip
    subprocess.run(
        ["apt-get", *options, "update", "-qq"], check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        ["apt-get", *options, "source", "-qq", "kubernetes"],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    trees = [
        p for p in work.iterdir() if p.is_dir() and p.name.startswith("kubernetes-")
    ]
    if not trees:
        raise BuildError("apt-get source kubernetes left no source tree")
    return trees[0]


# reflect2 1.0.1, vendored by Kubernetes 1.20, calls reflect.mapiterinit with
# the signature it had before Go 1.18: built with Debian's Go 1.19, the API
# server dies (SIGSEGV) the first time it encodes a custom resource. The
# fix reflect2 1.0.2 made, applied to the vendored copy.
REFLECT2 = "vendor/github.com/modern-go/reflect2"
REFLECT2_PATCHES = {
    "unsafe_link.go": (
        "//go:noescape\n//go:linkname mapiterinit reflect.mapiterinit\n"
        "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter\n",
        "//go:linkname mapiterinit reflect.mapiterinit\n"
        "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)\n",
    ),
    # the iterator is now ours to allocate: all of runtime.hiter, not the
    # two fields 1.0.1 read through a pointer
    "unsafe_link.go#hiter": (
        "\t// rest fields are ignored\n}",
        "\tt           unsafe.Pointer\n"
        "\th           unsafe.Pointer\n"
        "\tbuckets     unsafe.Pointer\n"
        "\tbptr        unsafe.Pointer\n"
        "\toverflow    *[]unsafe.Pointer\n"
        "\toldoverflow *[]unsafe.Pointer\n"
        "\tstartBucket uintptr\n"
        "\toffset      uint8\n"
        "\twrapped     bool\n"
        "\tB           uint8\n"
        "\ti           uint8\n"
        "\tbucket      uintptr\n"
        "\tcheckBucket uintptr\n}",
    ),
    "unsafe_map.go": (
        "\treturn &UnsafeMapIterator{\n"
        "\t\thiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),\n",
        "\tvar it hiter\n"
        "\tmapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)\n"
        "\treturn &UnsafeMapIterator{\n"
        "\t\thiter:      &it,\n",
    ),
}


def patch_reflect2(tree):
    for name, (old, new) in REFLECT2_PATCHES.items():
        path = tree / REFLECT2 / name.partition("#")[0]
        text = path.read_text()
        if old not in text:
            raise BuildError(f"{path.name} is not the reflect2 1.0.1 this patch is for")
        path.write_text(text.replace(old, new))


def build():
    """Build both binaries into the cache; return the cache folder."""
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="kubebuild-") as tmp:
        work = Path(tmp)
        log("fetching Debian's kubernetes source package")
        tree = _fetch_source(work)
        patch_reflect2(tree)
        gopath = work / "gopath"
        link = gopath / "src" / "k8s.io" / "kubernetes"
        link.parent.mkdir(parents=True)
        link.symlink_to(tree)
        env = dict(
            os.environ,
            GOPATH=str(gopath),
            GO111MODULE="off",
            GOPROXY="off",
            GOFLAGS="-mod=vendor",
            CGO_ENABLED="0",
            GOCACHE=str(work / "gocache"),
            KUBE_GIT_VERSION=VERSION,
            KUBE_GIT_MAJOR="1",
            KUBE_GIT_MINOR="20",
            KUBE_GIT_TREE_STATE="archive",
            KUBE_GIT_COMMIT=COMMIT,
        )
        env.pop("GOFLAGS")
        log(f"building {' and '.join(BINARIES)} {VERSION} (about 5 minutes)")
        result = subprocess.run(
            ["make", f"WHAT={' '.join('cmd/' + b for b in BINARIES)}"],
            cwd=link,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode:
            raise BuildError(
                "building kube-apiserver failed:\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        outputs = list((tree / "_output").rglob("kube-apiserver"))
        if not outputs:
            raise BuildError("the build produced no kube-apiserver")
        folder = outputs[0].parent
        CACHE.mkdir(parents=True, exist_ok=True)
        for name in BINARIES:
            partial = CACHE / f".{name}.partial"
            shutil.copy2(folder / name, partial)
            partial.rename(CACHE / name)
    return CACHE


def ensure():
    """The folder holding both binaries, built first when not cached."""
    ensure_tools()
    return cached() or build()


if __name__ == "__main__":
    try:
        print(ensure())
    except (BuildError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
