#!/usr/bin/env python3
"""The four package lists of the Pi and container builds stay in step (a Dockerfile lint of sorts).

  check_package_lists.py REPO

- the sysroot (scripts/make_sysroot.sh) and the Docker build stage hold every library -dev
  package the host build installs (scripts/install_deps.sh);
- the Docker runtime stage installs what Makefile.pi's pi-deps installs on a Pi;
- every package named exists in this machine's Debian package index (apt-cache), when there is one.
"""
import re
import shutil
import subprocess
import sys

repo = sys.argv[1]


def read(path):
    with open(f"{repo}/{path}") as f:
        return f.read()


def bash_array(text, name):
    body = re.search(name + r"=\(\n(.*?)\n\)", text, re.S).group(1)
    return {w for line in body.splitlines() for w in line.split() if not w.startswith(("#", '"$@"'))}


deps = read("scripts/install_deps.sh")
build = bash_array(deps, "build_packages")
sysroot = bash_array(read("scripts/make_sysroot.sh"), "packages")
dockerfile = read("docker/Dockerfile")
stages = dockerfile.split("\nFROM ")
docker_build = set(re.findall(r"[a-z0-9.+-]+", re.search(r"apt-get install -y --no-install-recommends(.*?)&&",
                                                         stages[-2], re.S).group(1))) - {"\\"}
docker_runtime = set(re.findall(r"[a-z0-9.+-]+", re.search(r"apt-get install -y --no-install-recommends(.*?)&&",
                                                           stages[-1], re.S).group(1)))
makefile = read("Makefile.pi")
pi = set(re.search(r"PI_PACKAGES := (.*?)\n\n", makefile, re.S).group(1).replace("\\", " ").split())

# The libraries the program links: the -dev packages of the host's build (not test) list.
linked = {p for p in build if p.startswith("lib") and p.endswith("-dev")}
problems = []
for name, have in (("scripts/make_sysroot.sh", sysroot), ("docker/Dockerfile (build stage)", docker_build)):
    missing = sorted(linked - have)
    if missing:
        problems.append(f"{name} lacks {' '.join(missing)}, which scripts/install_deps.sh installs for the build")
missing = sorted((pi - {"rsync"}) - docker_runtime)
if missing:
    problems.append(f"docker/Dockerfile (runtime stage) lacks {' '.join(missing)}, which Makefile.pi pi-deps installs")

if shutil.which("apt-cache"):
    named = sorted(sysroot | docker_build | docker_runtime | pi)
    # One call (each reads the whole index); it succeeds when any is found, so compare names.
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *named], capture_output=True, text=True).stdout
    found = {line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Package:")}
    for p in named:
        if p not in found:
            problems.append(f"package {p} is not in this machine's Debian index")

for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(f"package lists agree: {len(linked)} linked -dev packages in sysroot and Docker build stage, "
      f"{len(pi)} runtime packages for Pis and the image")
