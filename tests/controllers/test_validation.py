"""Bad manifests fail with the field path and message a real API server gives, so a
`kubectl apply` (or a GitOps sync) of a broken Deployment tells users the same thing."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from controllers import errors
from controllers.defaults import apply_defaults
from controllers.kinds import ResourceType, builtin_types
from controllers.quantity import QuantityError, format_quantity, parse_quantity
from controllers.validation import cron_schedule_error, prune_unknown_fields, validate

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
IMMUTABLE_SELECTOR = (
    'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, '
    "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
)


def rt(group: str, kind: str) -> ResourceType:
    return next(r for r in builtin_types() if r.group == group and r.kind == kind)


def problems(group: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Default then validate, as the apiserver does; "field: message" per cause."""
    resource = rt(group, kind)
    obj = copy.deepcopy(obj)
    apply_defaults(resource, obj)
    if old is not None:
        old = copy.deepcopy(old)
        apply_defaults(resource, old)
    causes = validate(resource, obj, old)
    return [f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes]


def deployment(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
            },
        },
    }
    base["spec"].update(spec)
    return base


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": list(containers) or [{"name": "c", "image": "app:1"}], **spec},
    }


# ---------------------------------------------------------------------------- the bad Deployment


def test_a_valid_deployment_has_no_problems() -> None:
    assert problems("apps", "Deployment", deployment()) == []


def test_kubectl_apply_of_a_bad_deployment() -> None:
    bad = deployment()
    bad["metadata"]["name"] = "Foo_bar"
    del bad["spec"]["template"]["spec"]["containers"][0]["image"]
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "api"}
    resource = rt("apps", "Deployment")
    apply_defaults(resource, bad)
    causes = validate(resource, bad, None)
    assert causes == [
        {
            "reason": "FieldValueInvalid",
            "field": "metadata.name",
            "message": f'Invalid value: "Foo_bar": {SUBDOMAIN_MSG}',
        },
        {
            "reason": "FieldValueRequired",
            "field": "spec.template.spec.containers[0].image",
            "message": "Required value",
        },
        {
            "reason": "FieldValueInvalid",
            "field": "spec.template.metadata.labels",
            "message": 'Invalid value: map[string]string{"app":"api"}: `selector` does not match template `labels`',
        },
    ]
    err = errors.invalid(resource.kind, resource.group, "Foo_bar", causes)
    assert err.code == 422
    assert "spec.template.spec.containers[0].image: Required value" in err.message


def test_deployment_selector_rules() -> None:
    no_selector = deployment()
    del no_selector["spec"]["selector"]
    assert problems("apps", "Deployment", no_selector) == ["spec.selector: Required value"]
    assert problems("apps", "Deployment", deployment(selector={})) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
    ]

    def expression(operator: str) -> dict[str, Any]:
        return deployment(selector={"matchExpressions": [{"key": "app", "operator": operator, "values": ["web", "x"]}]})

    assert problems("apps", "Deployment", expression("In")) == []
    assert (
        'spec.selector.matchExpressions[0].operator: Invalid value: "Equals": not a valid selector '
        "operator" in problems("apps", "Deployment", expression("Equals"))
    )


def test_selector_is_immutable_on_update() -> None:
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web2"}})
    new["spec"]["template"]["metadata"]["labels"] = {"app": "web2"}
    assert problems("apps", "Deployment", new, old) == [IMMUTABLE_SELECTOR]
    scaled = deployment(replicas=5)
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert problems("apps", "Deployment", scaled, old) == []
    for kind in ("ReplicaSet", "DaemonSet"):
        assert IMMUTABLE_SELECTOR in problems("apps", kind, new, old)


def test_deployment_strategy_and_counters() -> None:
    zero = deployment(strategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}})
    assert problems("apps", "Deployment", zero) == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "
        'intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0'
    ]
    assert problems("apps", "Deployment", deployment(strategy={"rollingUpdate": {"maxSurge": "x"}})) == [
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: "x": a valid percent string must be a '
        "numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
        "'[0-9]+%')"
    ]
    recreate = deployment(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
    assert problems("apps", "Deployment", recreate) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
    ]
    assert problems("apps", "Deployment", deployment(strategy={"type": "BlueGreen"})) == [
        'spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"'
    ]
    assert problems("apps", "Deployment", deployment(replicas=-1)) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    ]
    assert problems("apps", "Deployment", deployment(minReadySeconds=30, progressDeadlineSeconds=10)) == [
        "spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds"
    ]


def test_template_restart_policy_for_controllers() -> None:
    never = deployment()
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert problems("apps", "Deployment", never) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'
    ]


# ---------------------------------------------------------------------------- pods and containers


def test_container_names_ports_and_policies() -> None:
    p = pod(
        {
            "name": "web",
            "image": "nginx",
            "ports": [
                {"containerPort": 0},
                {"containerPort": 70000, "name": "http"},
                {"containerPort": 81, "name": "http", "protocol": "tcp"},
            ],
        },
        {"name": "web", "image": "nginx", "imagePullPolicy": "Sometimes"},
        {"name": "Side_car", "image": " busybox"},
    )
    assert problems("", "Pod", p) == [
        "spec.containers[0].ports[0].containerPort: Required value",
        "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[2].name: Duplicate value: "http"',
        'spec.containers[0].ports[2].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[1].name: Duplicate value: "web"',
        'spec.containers[1].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"IfNotPresent", "Never"',
        f'spec.containers[2].name: Invalid value: "Side_car": {DNS_LABEL_MSG}',
        'spec.containers[2].image: Invalid value: " busybox": must not have leading or trailing whitespace',
    ]


def test_pod_level_rules() -> None:
    assert problems("", "Pod", pod(restartPolicy="Sometimes")) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'
    ]
    assert problems("", "Pod", {"metadata": {"name": "p", "namespace": "d"}, "spec": {}}) == [
        "spec.containers: Required value"
    ]
    mounts = pod({"name": "c", "image": "a", "volumeMounts": [{"name": "data", "mountPath": "/d"}]})
    assert problems("", "Pod", mounts) == ['spec.containers[0].volumeMounts[0].name: Not found: "data"']
    bad_toleration = pod(
        tolerations=[{"key": "dedicated", "operator": "Exists", "value": "gpu"}, {"operator": "Equal", "value": "x"}]
    )
    assert problems("", "Pod", bad_toleration) == [
        'spec.tolerations[0].operator: Invalid value: core.Toleration{Key:"dedicated", '
        'Operator:"Exists", Value:"gpu", Effect:"", TolerationSeconds:(*int64)(nil)}: value must be empty '
        "when `operator` is 'Exists'",
        'spec.tolerations[1].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, '
        'which means "match all values and all keys"',
    ]
    probe = pod({"name": "c", "image": "a", "livenessProbe": {"successThreshold": 2}})
    assert problems("", "Pod", probe) == [
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
    ]


def test_requests_may_not_exceed_limits() -> None:
    def resources(requests: dict[str, str], limits: dict[str, str]) -> list[str]:
        return problems(
            "", "Pod", pod({"name": "c", "image": "a", "resources": {"requests": requests, "limits": limits}})
        )

    assert resources({"cpu": "1000m", "memory": "1024Mi"}, {"cpu": "1", "memory": "1Gi"}) == []
    at = "spec.containers[0].resources.requests"
    assert resources({"cpu": "1500m", "memory": "1025Mi"}, {"cpu": "1", "memory": "1Gi"}) == [
        f'{at}: Invalid value: "1500m": must be less than or equal to cpu limit of 1',
        f'{at}: Invalid value: "1025Mi": must be less than or equal to memory limit of 1Gi',
    ]
    assert resources({"gpu": "1"}, {}) == [
        f'{at}[gpu]: Invalid value: "gpu": must be a standard resource for containers'
    ]
    assert resources({"cpu": "-1"}, {}) == [f'{at}[cpu]: Invalid value: "-1": must be greater than or equal to 0']


def test_malformed_quantity_fails_to_decode_like_kubernetes() -> None:
    with pytest.raises(errors.BadRequest) as exc:
        problems(
            "apps",
            "Deployment",
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "a", "resources": {"limits": {"memory": "1GB"}}}]},
                }
            ),
        )
    assert exc.value.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


def test_pod_spec_is_mostly_immutable() -> None:
    old = pod({"name": "c", "image": "app:1"})
    image_bump = pod({"name": "c", "image": "app:2"})
    assert problems("", "Pod", image_bump, old) == []
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"a": "b"}
    assert problems("", "Pod", relabelled, old) == []
    port_change = pod({"name": "c", "image": "app:1", "ports": [{"containerPort": 80}]})
    [message] = problems("", "Pod", port_change, old)
    assert message.startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    )


# ---------------------------------------------------------------------------- metadata


def test_names_per_kind() -> None:
    assert problems("", "Namespace", {"metadata": {"name": "team.a"}}) == [
        f'metadata.name: Invalid value: "team.a": {DNS_LABEL_MSG}'
    ]
    svc = {"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}}
    assert problems("", "Service", svc) == [f'metadata.name: Invalid value: "1web": {DNS1035_MSG}']
    assert problems("", "ConfigMap", {"metadata": {"name": "app.config", "namespace": "d"}}) == []


def test_name_namespace_and_generate_name() -> None:
    assert problems("", "ConfigMap", {"metadata": {"namespace": "d"}}) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert problems("", "ConfigMap", {"metadata": {"generateName": "cfg-", "namespace": "d"}}) == []
    assert problems("", "ConfigMap", {"metadata": {"name": "cfg"}}) == ["metadata.namespace: Required value"]
    assert problems("", "Namespace", {"metadata": {"name": "a", "namespace": "b"}}) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]


def test_label_and_annotation_syntax() -> None:
    cm = {
        "metadata": {
            "name": "c",
            "namespace": "d",
            "labels": {"app": "web server", "-x": "ok"},
            "annotations": {"example.com/a/b": "v"},
        }
    }
    assert problems("", "ConfigMap", cm) == [
        f'metadata.labels: Invalid value: "web server": {LABEL_VALUE_MSG}',
        f'metadata.labels: Invalid value: "-x": name part {QNAME_MSG}',
        f'metadata.annotations: Invalid value: "example.com/a/b": a qualified name {QNAME_MSG} with an '
        "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ]


def test_numeric_label_value_is_a_decode_error() -> None:
    with pytest.raises(
        errors.BadRequest,
        match=r"cannot unmarshal number into Go struct field "
        r"ObjectMeta\.metadata\.labels of type string",
    ):
        problems("", "ConfigMap", {"metadata": {"name": "c", "namespace": "d", "labels": {"version": 1.0}}})


# ---------------------------------------------------------------------------- other workloads


def job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "pi", "namespace": "d", "uid": "u-1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
    }
    base["spec"].update(spec)
    return base


def test_job_restart_policy_and_generated_selector() -> None:
    assert problems("batch", "Job", job()) == []
    always = job()
    del always["spec"]["template"]["spec"]["restartPolicy"]
    assert problems("batch", "Job", always) == [
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
    ]
    hijacked = job(selector={"matchLabels": {"app": "other"}})
    assert problems("batch", "Job", hijacked)[-2:] == [
        "spec.template.metadata.labels: Invalid value: map[string]string{"
        '"batch.kubernetes.io/controller-uid":"u-1", "batch.kubernetes.io/job-name":"pi", '
        '"controller-uid":"u-1", "job-name":"pi"}: `selector` does not match template `labels`',
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"other"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated",
    ]


def test_job_update_rules() -> None:
    old = job()
    new = job()
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:2"
    [message] = problems("batch", "Job", new, old)
    assert message.startswith("spec.template: Invalid value: core.PodTemplateSpec")
    assert message.endswith("field is immutable")
    assert problems("batch", "Job", job(completions=3), old) == [
        "spec.completions: Invalid value: 3: field is immutable"
    ]
    suspended = job(suspend=True)
    moved = job(suspend=True)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "batch"}
    assert problems("batch", "Job", moved, suspended) == []


def test_statefulset_update_forbidden_fields() -> None:
    sts: dict[str, Any] = {
        "metadata": {"name": "db", "namespace": "d"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "pg"}]},
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
            ],
        },
    }
    assert problems("apps", "StatefulSet", sts) == []
    bigger = copy.deepcopy(sts)
    bigger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert problems("apps", "StatefulSet", bigger, sts) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
        "'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
        "'minReadySeconds' are forbidden"
    ]
    scaled = copy.deepcopy(sts)
    scaled["spec"]["replicas"] = 3
    assert problems("apps", "StatefulSet", scaled, sts) == []


def test_cronjob_rules() -> None:
    cj: dict[str, Any] = {
        "metadata": {"name": "report", "namespace": "d"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job()["spec"]}},
    }
    assert problems("batch", "CronJob", cj) == []
    bad = copy.deepcopy(cj)
    bad["metadata"]["name"] = "r" * 53
    bad["spec"].update(schedule="61 * * * *", concurrencyPolicy="Sometimes")
    del bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"]
    assert problems("batch", "CronJob", bad) == [
        f'metadata.name: Invalid value: "{"r" * 53}": must be no more than 52 characters',
        'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
        'spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"',
    ]


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("*/15 9-17 * * mon-fri", None),
        ("@hourly", None),
        ("0 0 1 JAN ?", None),
        ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ],
)
def test_cron_schedules(schedule: str, error: str | None) -> None:
    assert cron_schedule_error(schedule) == error


# ---------------------------------------------------------------------------- Service, ConfigMap, Secret


def service(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "d"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec},
    }


def test_service_rules() -> None:
    assert problems("", "Service", service()) == []
    assert problems("", "Service", service(ports=[])) == ["spec.ports: Required value"]
    assert problems("", "Service", service(clusterIP="None", ports=[])) == []  # headless
    assert problems("", "Service", service(type="Internal")) == [
        'spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"'
    ]
    two = service(ports=[{"port": 80}, {"port": 70000, "name": "x", "protocol": "HTTP"}])
    assert problems("", "Service", two) == [
        "spec.ports[0].name: Required value",
        "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
        "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ]
    assert problems("", "Service", service(ports=[{"port": 80, "nodePort": 30080}])) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    ]


def test_service_cluster_ip_is_immutable_but_may_be_omitted() -> None:
    old = service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"])
    assert problems("", "Service", service(), old) == []  # the apiserver carries the IP over
    assert problems("", "Service", service(clusterIP="10.96.0.99"), old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may not change once set'
    ]


def test_configmap_keys_values_and_immutability() -> None:
    cm: dict[str, Any] = {
        "metadata": {"name": "c", "namespace": "d"},
        "data": {"app.yaml": "x", "bad key": "y"},
        "binaryData": {"app.yaml": "eA=="},
    }
    assert sorted(problems("", "ConfigMap", cm)) == sorted(
        [
            'data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric '
            "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
            "validation is '[-._a-zA-Z0-9]+')",
            'data[app.yaml]: Invalid value: "app.yaml": duplicate of key present in binaryData',
            'binaryData[app.yaml]: Invalid value: "app.yaml": duplicate of key present in data',
        ]
    )
    with pytest.raises(errors.BadRequest, match="cannot unmarshal number into Go struct field ConfigMap"):
        problems("", "ConfigMap", {"metadata": {"name": "c", "namespace": "d"}, "data": {"port": 8080}})
    frozen: dict[str, Any] = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": True}
    changed = copy.deepcopy(frozen)
    changed["data"]["a"] = "2"
    assert problems("", "ConfigMap", changed, frozen) == ["data: Forbidden: field is immutable when `immutable` is set"]


def test_secret_types() -> None:
    tls: dict[str, Any] = {
        "metadata": {"name": "t", "namespace": "d"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "YQ=="},
    }
    assert problems("", "Secret", tls) == ["data[tls.key]: Required value"]
    opaque = {"metadata": {"name": "t", "namespace": "d"}, "data": {"tls.crt": "YQ==", "tls.key": "YQ=="}}
    tls["data"]["tls.key"] = "YQ=="
    assert problems("", "Secret", opaque, tls) == ['type: Invalid value: "Opaque": field is immutable']
    with pytest.raises(errors.BadRequest, match="illegal base64 data at input byte 3"):
        problems("", "Secret", {"metadata": {"name": "s", "namespace": "d"}, "data": {"k": "abc!"}})


# ---------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("a", "b"),
    [("1000m", "1"), ("1Gi", "1024Mi"), ("0.5", "500m"), ("1e3", "1k"), ("1.5Gi", "1536Mi"), (2, "2000m")],
)
def test_equal_quantities(a: str | int, b: str) -> None:
    assert parse_quantity(a) == parse_quantity(b)


def test_quantity_ordering_and_canonical_form() -> None:
    assert parse_quantity("1025Mi") > parse_quantity("1Gi")
    assert parse_quantity("100m") < parse_quantity("0.2")
    assert parse_quantity("128974848") == Decimal(128974848)
    given = ("1000m", "1024Mi", "1536Mi", "0.5", "1500", "2000", "1e3", "100Ki", 0.25)
    expected = ["1", "1Gi", "1536Mi", "500m", "1500", "2k", "1e3", "100Ki", "250m"]
    assert [format_quantity(q) for q in given] == expected


@pytest.mark.parametrize("bad", ["1GB", "", "abc", "1.2.3", "1iK", True])
def test_bad_quantities(bad: str | bool) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)


# ---------------------------------------------------------------------------- CRDs and custom resources

CRD: dict[str, Any] = {
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [
            {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
        ],
    },
}


def test_crd_validation() -> None:
    assert problems("apiextensions.k8s.io", "CustomResourceDefinition", CRD) == []
    bad = copy.deepcopy(CRD)
    bad["spec"].update(group="example", scope="Global")
    bad["spec"]["versions"].append({"name": "v2", "served": True, "storage": True})
    assert problems("apiextensions.k8s.io", "CustomResourceDefinition", bad) == [
        'metadata.name: Invalid value: "widgets.example.com": must be spec.names.plural+"."+spec.group',
        'spec.group: Invalid value: "example": should be a domain with at least one dot',
        'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
        "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required",
        f"spec.versions: Invalid value: {_json(bad['spec']['versions'])}: must have exactly one version "
        "marked as storage version",
    ]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
                "image": {"type": "string", "pattern": "^[a-z0-9./:-]+$"},
                "mode": {"type": "string", "enum": ["fast", "safe"]},
                "port": {"x-kubernetes-int-or-string": True},
                "listeners": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {"type": "object", "properties": {"name": {"type": "string", "minLength": 2}}},
                },
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}
WIDGET = ResourceType("example.com", "v1", "Widget", "widgets", True, schema=SCHEMA, crd=True)


def widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "d"},
        "spec": {"image": "app:1", **spec},
    }


def cr_problems(obj: dict[str, Any]) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in validate(WIDGET, obj, None)]


def test_custom_resource_schema_errors() -> None:
    assert cr_problems(widget(replicas=3, mode="fast", port="http", labels={"a": "b"})) == []
    assert cr_problems(widget(replicas="3")) == [
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    ]
    assert sorted(cr_problems(widget(replicas=11, mode="turbo", port=True, image="App"))) == sorted(
        [
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.image: Invalid value: \"App\": spec.image in body should match '^[a-z0-9./:-]+$'",
            'spec.mode: Unsupported value: "turbo": supported values: "fast", "safe"',
            'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
        ]
    )
    no_image = widget(listeners=[{"name": "a"}, {}, {}])
    del no_image["spec"]["image"]
    assert cr_problems(no_image) == [
        "spec.image: Required value",
        "spec.listeners: Too many: 3: must have at most 2 items",
        'spec.listeners[0].name: Invalid value: "a": spec.listeners[0].name in body should be at least 2 chars long',
    ]
    assert cr_problems(widget(replicas=-1)) == [
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
    ]


def test_pruning_reports_what_strict_field_validation_rejects() -> None:
    obj = widget(unknown=1, listeners=[{"name": "ab", "extra": True}], config={"anything": {"goes": 1}})
    obj["metadata"]["bogus"] = "x"
    obj["topLevel"] = 1
    obj["status"] = {"ready": True, "phase": "x"}
    dropped = prune_unknown_fields(SCHEMA, obj)
    assert dropped == ["metadata.bogus", "spec.listeners[0].extra", "spec.unknown", "status.phase", "topLevel"]
    assert obj["spec"] == {"image": "app:1", "listeners": [{"name": "ab"}], "config": {"anything": {"goes": 1}}}
    assert obj["status"] == {"ready": True}
    assert "topLevel" not in obj and obj["metadata"] == {"name": "w", "namespace": "d"}
    assert prune_unknown_fields(SCHEMA, obj) == []
