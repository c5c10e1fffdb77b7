#!/usr/bin/env python3
"""Checks k8s/chorus-mpijob.yaml offline (no cluster here).

  validate_k8s.py MANIFEST CRD [CHORUS_BINARY]

1. The MPIJob validates against the v2beta1 schema in the MPI Operator's CRD. Kubernetes drops
   fields a structural schema does not declare, silently; here an undeclared field is an error,
   so a typo cannot hide.
2. The validator itself rejects two broken copies (an unknown field, a wrong type): this test
   can fail.
3. The job hangs together: 9 workers for a 9-rank plan, the plan and cluster in the ConfigMap
   are valid JSON and mounted where the launcher's command reads them, and with CHORUS_BINARY
   the plan is validated against the model by `chorus plan --from`.
Exit 77 (CTest's skip) when the CRD, PyYAML or jsonschema is missing.
"""
import copy
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(SKIP)


try:
    import jsonschema
    import yaml
except ImportError as e:
    skip(f"{e.name} is not installed (Debian: python3-jsonschema python3-yaml)")


def strict(schema):
    """The schema with additionalProperties: false wherever Kubernetes would prune."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def mpijob_schema(crd_path):
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    for version in crd["spec"]["versions"]:
        if version["name"] == "v2beta1":
            return strict(version["schema"]["openAPIV3Schema"])
    sys.exit(f"{crd_path}: no v2beta1 version in the CRD")


def errors_of(validator, doc):
    return sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    manifest_path, crd_path = sys.argv[1], sys.argv[2]
    chorus = sys.argv[3] if len(sys.argv) > 3 else None
    if not os.path.exists(crd_path):
        skip(f"{crd_path} is absent (the MPI Operator's CRD lives in ../shared/k8s beside the clone)")

    validator = jsonschema.Draft7Validator(mpijob_schema(crd_path))
    with open(manifest_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {d["kind"]: d for d in docs}
    job, config = by_kind.get("MPIJob"), by_kind.get("ConfigMap")
    if job is None or config is None:
        sys.exit(f"{manifest_path}: expected an MPIJob and a ConfigMap, found {[d['kind'] for d in docs]}")
    if job.get("apiVersion") != "kubeflow.org/v2beta1":
        sys.exit(f"{manifest_path}: MPIJob apiVersion is {job.get('apiVersion')}, expected kubeflow.org/v2beta1")

    failed = False
    for e in errors_of(validator, job):
        print(f"{manifest_path}: MPIJob {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        failed = True

    # The validator must catch what a careless edit does.
    typo = copy.deepcopy(job)
    typo["spec"]["mpiReplicaSpecs"]["Worker"]["replica"] = 9
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["slotsPerWorker"] = "one"
    for name, bad in (("an unknown field", typo), ("a string for slotsPerWorker", wrong_type)):
        if not errors_of(validator, bad):
            print(f"the validator accepted an MPIJob with {name}")
            failed = True

    # The job's parts agree with each other.
    specs = job["spec"]["mpiReplicaSpecs"]
    plan = json.loads(config["data"]["plan.json"])
    json.loads(config["data"]["cluster.json"])
    workers = specs["Worker"]["replicas"]
    if plan["ranks"] != workers * job["spec"].get("slotsPerWorker", 1):
        print(f"the plan has {plan['ranks']} ranks but the job starts {workers} worker slots")
        failed = True
    launcher_cmd = specs["Launcher"]["template"]["spec"]["containers"][0]["command"]
    np_arg = launcher_cmd[launcher_cmd.index("-np") + 1]
    if int(np_arg) != plan["ranks"]:
        print(f"mpirun -np {np_arg} but the plan has {plan['ranks']} ranks")
        failed = True
    mounts = {m["mountPath"] for c in specs["Worker"]["template"]["spec"]["containers"] for m in c["volumeMounts"]}
    for arg in launcher_cmd:
        if arg.startswith("/") and not any(arg.startswith(m + "/") for m in mounts):
            print(f"the launcher's command reads {arg}, which no worker mounts")
            failed = True

    if chorus:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with tempfile.TemporaryDirectory() as tmp:
            for key in ("plan.json", "cluster.json"):
                with open(os.path.join(tmp, key), "w") as f:
                    f.write(config["data"][key])
            model = os.path.join(repo, plan["model"])
            cmd = [chorus, "plan", model, "--from", os.path.join(tmp, "plan.json"),
                   "--cluster", os.path.join(tmp, "cluster.json"), "-o", os.path.join(tmp, "checked.json")]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                print(f"`chorus plan --from` refused the ConfigMap's plan:\n{run.stdout}{run.stderr}")
                failed = True

    if failed:
        sys.exit(1)
    print(f"{manifest_path}: the MPIJob validates against {os.path.basename(crd_path)} (v2beta1, unknown fields refused); "
          f"{workers} workers, {plan['ranks']}-rank plan checked")


if __name__ == "__main__":
    main()
