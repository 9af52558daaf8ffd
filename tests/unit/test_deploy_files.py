"""The deployment files, checked with the tools that read them: the Serve config with Ray
Serve's own schema, builders and `serve build`; the cluster launcher's config with Ray's own
validation; the KubeRay manifests against the required fields of KubeRay's CRDs. No Ray runs."""

from __future__ import annotations

import copy
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pydantic
import pytest
import yaml

from media_ray.config import MediaRayConfig
from media_ray.topology import plan_apps

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"
RAY_CLUSTER = ROOT / "ray-cluster.yaml"
PLACEMENT = ROOT / "cluster" / "placement.yaml"
RAYSERVICE = ROOT / "cluster" / "rayservice.yaml"
RAYJOB = ROOT / "cluster" / "rayjob.yaml"
KUBE_CONFIG = ROOT / "cluster" / "media-ray-config.yaml"
TIER = "media-ray.io/tier"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def selected_labels(placement: dict) -> set[tuple[str, str]]:
    """Every (label, value) that a placement section selects, fallbacks included."""
    selectors = []
    for p in placement.values():
        selectors.append(p.get("label_selector") or {})
        selectors.extend(f.get("label_selector") or {} for f in p.get("fallback_strategy") or [])
    return {(k, v) for s in selectors for k, v in s.items()}


# -- the Serve config ----------------------------------------------------------------------


def test_the_serve_config_is_valid_for_ray_serve():
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(load(SERVE_CONFIG))
    routed = [a.name for a in schema.applications if a.route_prefix is not None]
    assert len(routed) == 1 and routed[0].endswith("-api")  # the API on `/`; detectors by handle only


def test_the_serve_config_lists_the_applications_media_ray_serve_deploys():
    from deployments.serve_app import api_app_name

    apps = load(SERVE_CONFIG)["applications"]
    api = next(a for a in apps if a["import_path"] == "deployments.serve_app:build_api_app")
    config = MediaRayConfig()
    planned = plan_apps(config, api["args"]["detectors"], config.live.tiers or None)
    detector_apps = [a for a in apps if a is not api]
    assert [a["name"] for a in detector_apps] == [p.name for p in planned]
    assert [a["args"] for a in detector_apps] == [
        {"detector": p.detector, **({"tier": p.tier} if p.tier else {})} for p in planned
    ]
    assert {a["import_path"] for a in detector_apps} == {"deployments.serve_app:build_detector_app"}
    assert api["name"] == api_app_name(config) and api["route_prefix"] == "/"


def test_the_builders_take_typed_arguments_and_the_placement_of_the_config_tree(tmp_path):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary as build
    from ray.serve._private.build_app import build_app

    from deployments.serve_app import build_api_app, build_detector_app

    with pytest.raises(pydantic.ValidationError):
        build(build_api_app, {"detectors": []})
    with pytest.raises(pydantic.ValidationError):
        build(build_detector_app, {"detector": "reference", "colour": "red"})  # not an argument
    (tmp_path / "media-ray.yaml").write_text(
        yaml.safe_dump({"placement": {"reference": {"num_cpus": 0.5, "replicas": 3, "label_selector": {TIER: "lan"}}}})
    )
    app = build(build_detector_app, {"detector": "reference", "config": str(tmp_path / "media-ray.yaml")})
    (deployment,) = build_app(app, name="reference").deployments
    assert deployment.name == "ReferenceDetector" and deployment.num_replicas == 3
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    assert deployment.ray_actor_options["label_selector"] == {TIER: "lan"}


def _serve_command() -> list[str]:
    found = shutil.which("serve", path=os.path.dirname(sys.executable)) or shutil.which("serve")
    return [found] if found else [sys.executable, "-c", "from ray.serve.scripts import cli; cli()"]


def test_serve_build_reproduces_the_serve_config(tmp_path):
    """`serve build` takes built applications, not builders: each application is built here as
    Serve builds it from the file (its builder called with its `args`), then `serve build` writes
    the config of them. Left aside: the names and routes it numbers (app1, /app1: "rename as
    necessary"), its import paths (of the built applications here) and the deployments' options,
    which the file leaves to the config tree's placement (it names the deployments only)."""
    committed = load(SERVE_CONFIG)
    (tmp_path / "built_apps.py").write_text(
        textwrap.dedent(
            f"""
            import yaml
            from ray._common.utils import import_attr
            from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

            for i, app in enumerate(yaml.safe_load(open({str(SERVE_CONFIG)!r}))["applications"]):
                globals()[f"app{{i}}"] = call_user_app_builder_with_args_if_necessary(
                    import_attr(app["import_path"]), app.get("args", {{}})
                )
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_RAY_")}
    env.update(HOME=str(tmp_path), MEDIA_RAY_HTTP__AUTH__TOKEN="serve-build-token-0123456789")  # no token file
    targets = [f"built_apps:app{i}" for i in range(len(committed["applications"]))]
    out = tmp_path / "built.yaml"
    proc = subprocess.run(
        [*_serve_command(), "build", "--app-dir", str(tmp_path), *targets, "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = load(out)
    assert set(built) == set(committed)
    for key in set(built) - {"applications"}:
        assert built[key] == committed[key], key
    assert len(built["applications"]) == len(committed["applications"])
    for made, kept in zip(built["applications"], committed["applications"]):
        assert set(kept) == set(made) | {"args"}
        assert made["runtime_env"] == kept["runtime_env"]
        assert [d["name"] for d in made["deployments"]] == [d["name"] for d in kept["deployments"]]
        assert all(set(d) == {"name"} for d in kept["deployments"])  # no options over the config tree's


# -- the cluster launcher's config -----------------------------------------------------------


def _start_labels(commands: list[str]) -> dict[str, str]:
    """The `--labels` of the `ray start` among `commands`, read by Ray's own parser."""
    from ray._private.label_utils import parse_node_labels_string

    (start,) = [shlex.split(c) for c in commands if c.startswith("ray start")]
    values = [a.split("=", 1)[1] for a in start if a.startswith("--labels=")]
    values += [start[i + 1] for i, a in enumerate(start[:-1]) if a == "--labels"]
    assert len(values) == 1, start
    return parse_node_labels_string(values[0])


def test_ray_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    # as `ray up` does: defaults of the provider filled in, then the schema and the checks
    validate_config(prepare_config(copy.deepcopy(load(RAY_CLUSTER))))


def test_every_node_type_starts_ray_with_the_labels_it_is_declared_with():
    config = load(RAY_CLUSTER)
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert _start_labels(config["head_start_ray_commands"]) == types[head]["labels"]
    workers = [t for name, t in types.items() if name != head]
    assert workers
    for worker in workers:  # every worker type runs the same start commands
        assert _start_labels(config["worker_start_ray_commands"]) == worker["labels"]


def test_the_node_labels_are_those_the_placement_selects():
    types = load(RAY_CLUSTER)["available_node_types"]
    offered = {(k, v) for t in types.values() for k, v in t["labels"].items()}
    placement = load(PLACEMENT)["placement"]
    assert offered <= selected_labels(placement)
    for p in placement.values():  # each detector's first choice is a node type of the cluster
        assert set((p.get("label_selector") or {}).items()) <= offered


# -- KubeRay -----------------------------------------------------------------------------------

# The `required:` lists of KubeRay's CRDs where these manifests reach, as read in ray-project/kuberay
# ray-operator/config/crd/bases: ray.io_rayservices.yaml at commit 026f1433 and ray.io_rayjobs.yaml at
# commit 00741298 (version v1, served and stored; controller-gen v0.13.0). A key holds the tree under
# that field, `name[]` the tree of each item of a list. Container `name` is the core Kubernetes schema
# these CRDs embed. Newer CRDs (KubeRay 1.5) require no more than these of the fields used here and
# add the groups' `labels`.
POD_TEMPLATE = {
    "spec": {
        "required": ["containers"],
        "containers[]": {
            "required": ["name"],
            "env[]": {"required": ["name"], "valueFrom": {"secretKeyRef": {"required": ["key"]}}},
            "volumeMounts[]": {"required": ["mountPath", "name"]},
        },
        "volumes[]": {"required": ["name"], "persistentVolumeClaim": {"required": ["claimName"]}},
    }
}
RAY_CLUSTER_SPEC = {
    "required": ["headGroupSpec"],
    "headGroupSpec": {"required": ["rayStartParams", "template"], "template": POD_TEMPLATE},
    "workerGroupSpecs[]": {
        "required": ["groupName", "maxReplicas", "minReplicas", "rayStartParams", "template"],
        "template": POD_TEMPLATE,
    },
}
OBJECT = ["apiVersion", "kind", "metadata"]  # of every Kubernetes object
CRD_REQUIRED = {
    "RayService": {
        "required": OBJECT,
        "metadata": {"required": ["name"]},
        "spec": {"rayClusterConfig": RAY_CLUSTER_SPEC},
    },
    "RayJob": {
        "required": OBJECT,
        "metadata": {"required": ["name"]},
        "spec": {"required": ["entrypoint"], "rayClusterSpec": RAY_CLUSTER_SPEC, "submitterPodTemplate": POD_TEMPLATE},
    },
}


def missing_fields(value: dict, tree: dict, path: str = "") -> list[str]:
    """The fields `tree` requires that `value` lacks, by their path."""
    out = [f"{path}.{key}" for key in tree.get("required", ()) if key not in value]
    for key, below in tree.items():
        if key == "required":
            continue
        if key.endswith("[]"):
            for i, item in enumerate(value.get(key[:-2]) or []):
                out += missing_fields(item, below, f"{path}.{key[:-2]}[{i}]")
        elif isinstance(value.get(key), dict):
            out += missing_fields(value[key], below, f"{path}.{key}")
    return out


def _groups(cluster_spec: dict) -> list[dict]:
    return [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]


def _containers(cluster_spec: dict) -> list[dict]:
    return [c for g in _groups(cluster_spec) for c in g["template"]["spec"]["containers"]]


@pytest.mark.parametrize(
    "path,kind,cluster_key", [(RAYSERVICE, "RayService", "rayClusterConfig"), (RAYJOB, "RayJob", "rayClusterSpec")]
)
def test_the_kuberay_manifests_have_every_field_their_crd_requires(path, kind, cluster_key):
    manifest = load(path)
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
    assert missing_fields(manifest, CRD_REQUIRED[kind]) == []
    broken = copy.deepcopy(manifest)  # the check sees a missing field
    del broken["spec"][cluster_key]["workerGroupSpecs"][0]["groupName"]
    assert missing_fields(broken, CRD_REQUIRED[kind]) == [f".spec.{cluster_key}.workerGroupSpecs[0].groupName"]


def test_the_rayservice_serves_the_serve_config_file():
    serve_config = load(RAYSERVICE)["spec"]["serveConfigV2"]
    assert isinstance(serve_config, str)  # the CRD's type: the Serve config as YAML text
    assert yaml.safe_load(serve_config) == load(SERVE_CONFIG)


@pytest.mark.parametrize("path,cluster_key", [(RAYSERVICE, "rayClusterConfig"), (RAYJOB, "rayClusterSpec")])
def test_the_kuberay_groups_carry_the_labels_the_placement_selects_and_a_gpu_group(path, cluster_key):
    cluster = load(path)["spec"][cluster_key]
    groups = _groups(cluster)
    for g in groups:
        # KubeRay >= 1.5 refuses labels in rayStartParams: the group's `labels` are what Ray gets
        assert "labels" not in g["rayStartParams"] and set(g["labels"]) == {TIER}
    offered = {(k, v) for g in groups for k, v in g["labels"].items()}
    media_ray_yaml = yaml.safe_load(load(KUBE_CONFIG)["data"]["media-ray.yaml"])
    MediaRayConfig(**media_ray_yaml)  # a valid config tree
    placement = media_ray_yaml["placement"]
    assert selected_labels(placement) <= offered
    gpu = [
        g
        for g in cluster["workerGroupSpecs"]
        if any(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1 for c in g["template"]["spec"]["containers"])
    ]
    assert gpu and all((TIER, "cloud") in g["labels"].items() for g in gpu)
    assert {(TIER, "cloud")} <= {kv for p in placement.values() for kv in (p.get("label_selector") or {}).items()}


def test_every_ray_pod_mounts_the_media_ray_config_where_the_manifests_read_it():
    key = next(iter(load(KUBE_CONFIG)["data"]))
    service = load(RAYSERVICE)["spec"]["rayClusterConfig"]
    job = load(RAYJOB)["spec"]
    for container in _containers(service) + _containers(job["rayClusterSpec"]):
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert f"{mounts['media-ray-config']}/{key}" == "/etc/media-ray/media-ray.yaml"
    for container in _containers(service):  # the Serve builders read it from the environment
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MEDIA_RAY_CONFIG_FILE"] == "/etc/media-ray/media-ray.yaml"


def test_the_rayjob_runs_media_ray_analyze_as_the_cli_parses_it():
    from media_ray.app.cli import parser

    argv = shlex.split(load(RAYJOB)["spec"]["entrypoint"])
    assert argv[:2] == ["media-ray", "analyze"]
    args = parser().parse_args(argv[1:])
    assert args.command == "analyze" and args.videos and args.brands and args.out
    assert args.config == "/etc/media-ray/media-ray.yaml"
